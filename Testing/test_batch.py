"""Cohort compression on a real local Dask cluster: results table, resume, failures, a worker killed."""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import phantom, run_cli
from SirenCompressLib import batch, read_archive, write_volume
from SirenCompressLib.errors import InputError

distributed = pytest.importorskip("distributed", reason="batch needs dask.distributed (the 'cluster' extra)")

OPTIONS = "codec,layers,units,epochs,qat_epochs,lr,device"
QUICK = "siren,2,16,20,2,0.003,cpu"


def write_cohort(folder: Path, n: int, epochs: int = 20) -> Path:
    """n phantom subjects and a manifest for them (relative paths), quick settings per row."""
    lines = [f"input,output,{OPTIONS}"]
    for i in range(n):
        write_volume(phantom(seed=i), folder / f"sub{i}.nii.gz")
        lines.append(f"sub{i}.nii.gz,out/sub{i}.sirz,{QUICK.replace(',20,', f',{epochs},')}")
    (folder / "out").mkdir()
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def results(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {Path(row["input"]).name: row for row in csv.DictReader(f)}


def test_manifest_rows_and_bad_manifests(tmp_path):
    (tmp_path / "m.tsv").write_text("input\toutput\tunits\tepochs\na.nii.gz\tb.sirz\t32\t\n")
    [subject] = batch.read_manifest(tmp_path / "m.tsv")
    assert subject.input == tmp_path / "a.nii.gz" and subject.options == {"units": "32"}
    (tmp_path / "bad.csv").write_text("in,out\na,b\n")
    with pytest.raises(InputError, match="'input' and 'output'"):
        batch.read_manifest(tmp_path / "bad.csv")
    (tmp_path / "twice.csv").write_text("input,output\na,x.sirz\nb,x.sirz\n")
    with pytest.raises(InputError, match="same output"):
        batch.read_manifest(tmp_path / "twice.csv")


def test_cohort_on_two_workers_with_a_corrupt_input_then_resume(tmp_path):
    manifest = write_cohort(tmp_path, 3)
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti file")
    with open(manifest, "a") as f:
        f.write(f"broken.nii.gz,out/broken.sirz,{QUICK}\n")
    r = run_cli("batch", manifest, "--local-workers", "2", timeout=600)
    assert r.returncode == 2, r.stderr  # some subjects failed
    assert "Dask dashboard: http" in r.stdout and "3 done, 0 skipped (done before), 1 failed" in r.stdout
    table = results(tmp_path / "cohort-results.csv")
    assert {name: row["status"] for name, row in table.items()} == {
        "sub0.nii.gz": "done", "sub1.nii.gz": "done", "sub2.nii.gz": "done", "broken.nii.gz": "failed"}
    assert "broken.nii.gz" in table["broken.nii.gz"]["error"] and "\n" not in table["broken.nii.gz"]["error"]
    assert len({row["worker"] for name, row in table.items() if row["status"] == "done"}) >= 1
    for i in range(3):
        archive = read_archive(tmp_path / "out" / f"sub{i}.sirz")
        assert float(table[f"sub{i}.nii.gz"]["psnr"]) == pytest.approx(archive.manifest["metrics"]["psnr"])
    assert not (tmp_path / "out" / "broken.sirz").exists()
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".partial-")] == []

    (tmp_path / "out" / "sub1.sirz").write_bytes(b"damaged")  # a damaged archive is redone
    before = (tmp_path / "out" / "sub0.sirz").stat().st_mtime_ns
    r = run_cli("batch", manifest, "--local-workers", "1", timeout=600)
    assert "2 skipped (done before)" in r.stdout and "1 done" in r.stdout
    table = results(tmp_path / "cohort-results.csv")
    assert table["sub0.nii.gz"]["status"] == "skipped" and table["sub1.nii.gz"]["status"] == "done"
    assert (tmp_path / "out" / "sub0.sirz").stat().st_mtime_ns == before
    read_archive(tmp_path / "out" / "sub1.sirz")


def test_the_readme_manifest_creates_its_output_folders(tmp_path):
    lines = [f"input,output,{OPTIONS}"]
    for subject, output in (("sub-001", "archives/sub-001.sirz"), ("sub-002", "archives/site-b/sub-002.sirz")):
        (tmp_path / subject).mkdir()
        write_volume(phantom(), tmp_path / subject / "dwi.nii.gz")
        lines.append(f"{subject}/dwi.nii.gz,{output},{QUICK}")
    (tmp_path / "cohort.csv").write_text("\n".join(lines) + "\n")
    r = run_cli("batch", tmp_path / "cohort.csv", "--local-workers", "1", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 done, 0 skipped (done before), 0 failed" in r.stdout
    read_archive(tmp_path / "archives" / "sub-001.sirz")
    read_archive(tmp_path / "archives" / "site-b" / "sub-002.sirz")


def test_an_output_folder_that_cannot_be_made_fails_the_subject(tmp_path):
    write_volume(phantom(), tmp_path / "sub.nii.gz")
    (tmp_path / "taken").write_text("a file where the folder should be")
    outcome = batch.compress_subject(batch.Subject(tmp_path / "sub.nii.gz", tmp_path / "taken" / "sub.sirz"))
    assert outcome.status == "failed" and "cannot create the output folder" in outcome.error, outcome.error
    assert "\n" not in outcome.error


def test_a_killed_worker_does_not_lose_its_subject(tmp_path):
    manifest = write_cohort(tmp_path, 2, epochs=400)
    subjects = batch.read_manifest(manifest)
    with batch.local_client(2) as client:
        outcome = {}

        def kill_busy_worker() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                busy = [w for w, tasks in client.processing().items() if tasks]
                if busy:
                    time.sleep(2)  # let its child process start training
                    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    outcome["killed"] = busy[0]
                    return
                time.sleep(0.2)

        killer = threading.Thread(target=kill_busy_worker)
        killer.start()
        outcomes = batch.run(subjects, client, retries=2)
        killer.join()
    assert "killed" in outcome
    assert [o.status for o in outcomes] == ["done", "done"], [o.error for o in outcomes]
    assert outcome["killed"] not in {o.worker for o in outcomes}  # finished by another (or restarted) worker
    for s in subjects:
        read_archive(s.output)


def test_slurm_jobs_ask_for_the_gpus():
    pytest.importorskip("dask_jobqueue", reason="SLURM support needs dask-jobqueue (the 'cluster' extra)")
    with batch.slurm_cluster(8, "32GB", gpus=1, queue="gpu") as cluster:
        script = cluster.job_script()
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH -p gpu" in script and "--nthreads 8" in script


def test_results_table_as_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet results need pyarrow (optional)")
    outcomes = [batch.Outcome("a.nii.gz", "a.sirz", "done", 20.5, 47.1, 12.0, "tcp://w1"),
                batch.Outcome("b.nii.gz", "b.sirz", "failed", error="b.nii.gz: not a NIfTI file")]
    batch.write_results(outcomes, tmp_path / "r.parquet")
    table = pq.read_table(tmp_path / "r.parquet").to_pydict()
    assert table["status"] == ["done", "failed"] and table["ratio"] == [20.5, None]
    assert table["error"][1] == "b.nii.gz: not a NIfTI file"


def test_a_switch_column_becomes_a_flag(tmp_path):
    write_volume(phantom(), tmp_path / "sub.nii.gz")
    subject = batch.Subject(tmp_path / "sub.nii.gz", tmp_path / "sub.sirz",
                            {"codec": "lossless", "motion": "true", "order": "file"})
    outcome = batch.compress_subject(subject)
    assert outcome.status == "done", outcome.error
    config = read_archive(tmp_path / "sub.sirz").manifest["codec"]["config"]
    assert config["motion"] is True and config["order"] == "file"


def test_a_siren3d_subject_and_a_bad_setting_cell(tmp_path):
    write_volume(phantom(), tmp_path / "sub.nii.gz")
    options = {"codec": "siren3d", "preset": "paper", "layers": "1", "units": "8", "epochs": "5", "device": "cpu",
               "target_ratio": "3"}
    outcome = batch.compress_subject(batch.Subject(tmp_path / "sub.nii.gz", tmp_path / "sub.sirz", options))
    assert outcome.status == "done", outcome.error
    codec = read_archive(tmp_path / "sub.sirz").manifest["codec"]
    assert codec["name"] == "siren3d" and codec["config"]["layers"] == 1 and codec["config"]["epochs"] == 5
    assert codec["config"]["weight_bits"] == 16 and codec["config"]["units"] != 8  # paper preset; units for the ratio
    outcome = batch.compress_subject(batch.Subject(tmp_path / "sub.nii.gz", tmp_path / "bad.sirz",
                                                   {"units": "many"}))
    assert outcome.status == "failed" and outcome.error == "--units takes an integer, not 'many'"
    assert not (tmp_path / "bad.sirz").exists()
