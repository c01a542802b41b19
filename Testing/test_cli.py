"""The `sirencompress` command line, run as a real child process on real files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from conftest import FAST_ARGS, REPO, assert_same_geometry, leftovers, run_cli
from SirenCompressLib import read_archive, read_volume
from SirenCompressLib.codecs import configure, settings_document
from SirenCompressLib.progress import slice_coded


def test_compress_info_decompress_evaluate(tmp_path, phantom_nifti):
    out = tmp_path / "p.sirz"
    r = run_cli("compress", phantom_nifti, "-o", out, *FAST_ARGS)
    assert r.returncode == 0, r.stderr
    assert "compression ratio" in r.stdout and "against gzip" in r.stdout

    info = run_cli("info", out, "--json")
    assert info.returncode == 0, info.stderr
    report = json.loads(info.stdout)
    assert report["shape"] == [16, 14, 3, 15]
    assert report["sizes"]["archive_bytes"] == out.stat().st_size
    assert report["sizes"]["ratio_raw16"] == pytest.approx(16 * 14 * 3 * 15 * 2 / out.stat().st_size)
    assert len(report["slices"]) == 3 and report["gradients"]["count"] == 15
    assert "PSNR dB" in run_cli("info", out).stdout

    for name in ("d.nii.gz", "d.nrrd"):
        r = run_cli("decompress", out, "-o", tmp_path / name)
        assert r.returncode == 0, r.stderr
        assert_same_geometry(read_volume(phantom_nifti), read_volume(tmp_path / name))

    evaluation = run_cli("evaluate", phantom_nifti, tmp_path / "d.nii.gz", "--json")
    assert evaluation.returncode == 0, evaluation.stderr
    measured = json.loads(evaluation.stdout)
    assert measured["whole"]["psnr"] == pytest.approx(report["metrics"]["psnr"], abs=1e-9)
    assert [s["psnr"] for s in measured["slices"]] == pytest.approx([s["psnr"] for s in report["slices"]])
    on_the_fly = json.loads(run_cli("evaluate", phantom_nifti, out, "--json").stdout)
    assert on_the_fly["whole"] == measured["whole"]


def test_real_sample_round_trip(tmp_path, sample_nifti):
    """The in-vivo sample (float32, oblique, 103 gradients) keeps shape, IJK→RAS, gradients and dtype."""
    out = tmp_path / "s.sirz"
    r = run_cli("compress", sample_nifti, "-o", out, "--codec", "siren", "--units", "64", "--epochs", "10",
                "--qat-epochs", "5", "--device", "cpu", "--progress", "none")
    assert r.returncode == 0, r.stderr
    r = run_cli("decompress", out, "-o", tmp_path / "s.nii.gz", block_torch=True)
    assert r.returncode == 0, r.stderr
    original, decoded = read_volume(sample_nifti), read_volume(tmp_path / "s.nii.gz")
    assert_same_geometry(original, decoded)
    np.testing.assert_allclose(decoded.gradients.bvecs, original.gradients.bvecs, atol=1e-9)
    np.testing.assert_allclose(decoded.gradients.bvals, original.gradients.bvals)
    manifest = json.loads(run_cli("info", out, "--json").stdout)
    measured = json.loads(run_cli("evaluate", sample_nifti, tmp_path / "s.nii.gz", "--json").stdout)
    assert measured["whole"]["psnr"] == pytest.approx(manifest["metrics"]["psnr"], abs=1e-9)


def test_decoding_needs_no_torch(tmp_path, phantom_nifti):
    out = tmp_path / "p.sirz"
    assert run_cli("compress", phantom_nifti, "-o", out, *FAST_ARGS).returncode == 0
    for args in (["decompress", out, "-o", tmp_path / "d.nii.gz"], ["info", out], ["evaluate", phantom_nifti, out]):
        r = run_cli(*args, block_torch=True)
        assert r.returncode == 0, r.stderr
    r = run_cli("compress", phantom_nifti, "-o", tmp_path / "x.sirz", *FAST_ARGS, block_torch=True)
    assert r.returncode == 1 and "internal error" in r.stderr  # proves torch really was blocked


def test_jsonl_progress(tmp_path, phantom_nifti):
    args = [a if a != "none" else "jsonl" for a in FAST_ARGS]
    r = run_cli("compress", phantom_nifti, "-o", tmp_path / "p.sirz", *args)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    epoch = next(e for e in events if e["event"] == "epoch")
    assert {"slice", "epoch", "loss", "psnr", "eta_s"} <= set(epoch)
    assert events[-1]["bytes"] == (tmp_path / "p.sirz").stat().st_size


def _bad_files(tmp_path):
    """(name, files to make, extra arguments, expected message) for each bad-input case."""
    def nifti(name, data):
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / name)

    nifti("three_d.nii.gz", np.zeros((8, 8, 3), np.int16))
    nifti("five_d.nii.gz", np.zeros((8, 8, 3, 2, 2), np.int16))
    nan = np.ones((8, 8, 2, 7), np.float32)
    nan[2, 2, 1, 3] = np.nan
    nifti("nan.nii.gz", nan)
    nifti("mismatch.nii.gz", np.ones((8, 8, 2, 7), np.int16))
    np.savetxt(tmp_path / "mismatch.bval", np.zeros((1, 8)))
    np.savetxt(tmp_path / "mismatch.bvec", np.zeros((3, 8)))
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    return [("three_d.nii.gz", "got a 3D image"), ("five_d.nii.gz", "got a 5D image"),
            ("nan.nii.gz", "NaN or Inf"), ("mismatch.nii.gz", "7 volumes but"), ("empty.nii.gz", "empty"),
            ("absent.nii.gz", "no such file")]


def test_bad_input_exits_2_with_one_line(tmp_path):
    for name, message in _bad_files(tmp_path):
        r = run_cli("compress", tmp_path / name, "-o", tmp_path / "out.sirz", *FAST_ARGS)
        assert r.returncode == 2, (name, r.stderr)
        assert message in r.stderr, (name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert not (tmp_path / "out.sirz").exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 99])
def test_corrupt_archive_exits_2(tmp_path, content):
    (tmp_path / "bad.sirz").write_bytes(content)
    for args in (["info", tmp_path / "bad.sirz"], ["decompress", tmp_path / "bad.sirz", "-o", tmp_path / "o.nii.gz"]):
        r = run_cli(*args)
        assert r.returncode == 2 and r.stderr.startswith("sirencompress: error:") and "Traceback" not in r.stderr
    assert not (tmp_path / "o.nii.gz").exists()


def test_truncated_archive_exits_2(tmp_path, phantom_nifti):
    out = tmp_path / "p.sirz"
    assert run_cli("compress", phantom_nifti, "-o", out, *FAST_ARGS).returncode == 0
    (tmp_path / "cut.sirz").write_bytes(out.read_bytes()[:-300])
    r = run_cli("decompress", tmp_path / "cut.sirz", "-o", tmp_path / "o.nii.gz")
    assert r.returncode == 2 and "not a valid .sirz archive" in r.stderr


def test_existing_output_needs_force_and_input_is_untouched(tmp_path, phantom_nifti):
    before = phantom_nifti.read_bytes()
    out = tmp_path / "p.sirz"
    out.write_bytes(b"precious")
    r = run_cli("compress", phantom_nifti, "-o", out, *FAST_ARGS)
    assert r.returncode == 2 and "--force" in r.stderr and out.read_bytes() == b"precious"
    assert run_cli("compress", phantom_nifti, "-o", out, *FAST_ARGS, "--force").returncode == 0
    assert out.read_bytes()[:2] == b"PK"
    assert phantom_nifti.read_bytes() == before


def test_unwritable_output(tmp_path, phantom_nifti):
    r = run_cli("compress", phantom_nifti, "-o", tmp_path / "no" / "such" / "dir" / "p.sirz", *FAST_ARGS)
    assert r.returncode == 2 and "no such folder" in r.stderr
    r = run_cli("compress", phantom_nifti, "-o", tmp_path / "p.nii.gz", *FAST_ARGS)
    assert r.returncode == 2 and "must end in .sirz" in r.stderr


def test_usage_errors_exit_2(tmp_path):
    assert run_cli().returncode == 2
    assert run_cli("compress", "x.nii.gz").returncode == 2  # -o missing
    assert run_cli("compress", "x.nii.gz", "-o", tmp_path / "x.sirz", "--layers", "zero").returncode == 2


def test_config_json_gives_the_codec_and_its_settings(tmp_path, phantom_nifti):
    quick = {"layers": 1, "units": 8, "epochs": 5, "qat_epochs": 0, "device": "cpu"}
    (tmp_path / "s.json").write_text(settings_document("siren3d", quick, "paper"))
    r = run_cli("compress", phantom_nifti, "-o", tmp_path / "a.sirz", "--config-json", tmp_path / "s.json",
                "--progress", "none")
    assert r.returncode == 0, r.stderr
    codec = read_archive(tmp_path / "a.sirz").manifest["codec"]
    assert codec == {"name": "siren3d", "config": configure("siren3d", quick, "paper").to_json()}
    r = run_cli("compress", phantom_nifti, "-o", tmp_path / "b.sirz", "--config-json", "-", "--progress", "none",
                stdin=settings_document("lossless", {"references": 4, "order": "file"}))
    assert r.returncode == 0, r.stderr
    codec = read_archive(tmp_path / "b.sirz").manifest["codec"]
    assert codec["name"] == "lossless" and codec["config"]["references"] == 4 and codec["config"]["order"] == "file"


@pytest.mark.parametrize("args, stdin, message", [
    (["--config-json", "-", "--units", "8"], settings_document(None, {}), "not both"),
    (["--config-json", "-"], "{units: 8", "not JSON"),
    (["--config-json", "-"], '{"codec": "siren", "config": [8]}', "must be a JSON object"),
    (["--config-json", "-"], settings_document("lossless", {"units": 8}), "--units does not apply to the lossless"),
    (["--config-json", "-"], settings_document("siren", {"units": "many"}), "units must be an integer, not 'many'"),
    (["--config-json", "-"], settings_document("siren", {"units": 0}), "units must be"),
    (["--codec", "siren", "--config-json", "-"], settings_document("fmri", {}), "names the fmri codec"),
    (["--config-json", "absent.json"], "", "cannot read the settings"),
    (["--codec", "lossless", "--units", "8"], "", "--units does not apply to the lossless codec"),
    (["--codec", "siren", "--components", "4"], "", "--components does not apply to the siren codec"),
    (["--codec", "lossless", "--preset", "paper"], "", "no preset 'paper'"),
])
def test_bad_codec_settings_exit_2_with_one_line(tmp_path, phantom_nifti, args, stdin, message):
    r = run_cli("compress", phantom_nifti, "-o", tmp_path / "x.sirz", *args, stdin=stdin)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.sirz").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_compress_leaves_no_file(tmp_path, phantom_nifti, sig):
    out = tmp_path / "p.sirz"
    child = subprocess.Popen(
        [sys.executable, "-m", "SirenCompressLib", "compress", str(phantom_nifti), "-o", str(out),
         "--codec", "siren", "--epochs", "100000", "--device", "cpu", "--progress", "jsonl"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        for line in child.stdout:  # wait until training has started
            if json.loads(line)["event"] == "epoch":
                break
        child.send_signal(sig)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "interrupted" in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_sample_command(tmp_path):
    r = run_cli("sample", tmp_path / "s")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["b1k_b2k.bval", "b1k_b2k.bvec", "b1k_b2k.nii.gz"]
    assert read_volume(tmp_path / "s" / "b1k_b2k.nii.gz").shape == (104, 104, 2, 103)


def test_output_cut_short_by_a_pipe_is_not_an_error(tmp_path, phantom_nifti):
    out = tmp_path / "p.sirz"
    assert run_cli("compress", phantom_nifti, "-o", out, *FAST_ARGS).returncode == 0
    closed_stdout = ("import os, sys\nr, w = os.pipe()\nos.close(r)\nos.dup2(w, 1)\n"
                     "from SirenCompressLib.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", closed_stdout, "info", str(out)], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 0 and r.stderr == ""


def test_target_noise_is_met_and_the_noise_is_shown(tmp_path, phantom_nifti):
    """--target-noise F with the transform codec: D/σ² within 5 % below F, in the done event; info gives σ and
    D/σ² and the SNR loss, whole and per slice."""
    out = tmp_path / "n.sirz"
    r = run_cli("compress", phantom_nifti, "-o", out, "--codec", "transform", "--target-noise", "0.3",
                "--progress", "jsonl")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    coded = [e for e in events if e["event"] == "slice"]  # one slab: slices 1 and 2 are in slice 0's member
    assert [(e["bytes"] > 0, e.get("member_of")) for e in coded] == [(True, None), (False, 0), (False, 0)]
    assert slice_coded(coded[1]) == "transform, in slice 1's member"
    done = events[-1]
    assert done["event"] == "done" and 0.95 * 0.3 <= done["noise_fraction"] <= 0.3
    assert done["snr_loss"] == pytest.approx(100 * (1 - 1 / np.sqrt(1 + done["noise_fraction"])))
    assert done["noise_sigma"] > 0
    report = json.loads(run_cli("info", out, "--json").stdout)
    assert report["noise"]["sigma"] == done["noise_sigma"] and "Marchenko" in report["noise"]["method"]
    assert report["noise"]["noise_fraction"] == pytest.approx(done["noise_fraction"])
    assert all(s["noise_fraction"] > 0 and s["snr_loss"] > 0 for s in report["slices"])
    text = run_cli("info", out).stdout
    assert "D/σ²" in text and "SNR loss" in text and "σ by Marchenko" in text
    rows = [line.split() for line in text.splitlines() if line.split()[:2] in (["1", "transform"], ["2", "transform"])]
    assert [row[2:4] for row in rows] == [["in", "0"], ["in", "0"]]  # one slab: its slices share slice 0's member


@pytest.mark.parametrize("case", ["exact codec", "no noise estimate", "two targets"])
def test_target_noise_refusals_exit_2_with_one_line(tmp_path, phantom_nifti, case):
    source, extra, message = phantom_nifti, ["--codec", "lossless"], "lossless codec cannot aim at an added noise"
    if case == "no noise estimate":  # too few volumes to tell noise from signal
        source = _few_volumes(tmp_path)
        extra, message = ["--codec", "transform"], "--target-noise needs the noise σ of the data"
    elif case == "two targets":
        extra, message = ["--codec", "transform", "--target-psnr", "40"], "give one rate target"
    r = run_cli("compress", source, "-o", tmp_path / "x.sirz", "--target-noise", "0.1", *extra, "--progress", "none")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.sirz").exists()


def test_progress_done_event_without_a_noise_estimate(tmp_path):
    """A lossy codec on data whose noise cannot be estimated (5 volumes): compressed all the same, no σ recorded,
    the done event's noise fields null, info without noise columns."""
    source, out = _few_volumes(tmp_path), tmp_path / "few.sirz"
    r = run_cli("compress", source, "-o", out, "--codec", "transform", "--progress", "jsonl")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout.splitlines()[-1])
    assert done["noise_sigma"] is None and done["noise_fraction"] is None and done["snr_loss"] is None
    assert "noise_sigma" not in read_archive(out).manifest["source"]
    assert "D/σ²" not in run_cli("info", out).stdout and "noise" not in r.stderr


def _few_volumes(tmp_path):
    """A noisy 8×8×2 image of 5 volumes (too few for a noise estimate), alone in a folder."""
    (tmp_path / "few").mkdir()
    path = tmp_path / "few" / "few.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).integers(0, 100, (8, 8, 2, 5), np.int16), np.eye(4)), path)
    return path
