"""The fmri codec: ICA finds planted sources, runs round-trip through numpy-only decoding, the CLI picks the
codec for time series, and `evaluate --fmri` measures GLM and connectivity changes; real fMRI smoke tests."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from SirenCompressLib import Volume4D, read_volume, write_volume
from SirenCompressLib.archive import read_archive, to_bytes
from SirenCompressLib.codecs import fmri
from SirenCompressLib.errors import InputError
from SirenCompressLib.fmri_phantom import fmri_phantom, hrf
from SirenCompressLib.pipeline import compress, decompress

QUICK = fmri.Config(units=32, layers=2, epochs=60, qat_epochs=10, device="cpu")
QUICK_ARGS = ["--units", "32", "--layers", "2", "--epochs", "60", "--qat-epochs", "10", "--device", "cpu",
              "--progress", "none"]


DATA = Path(__file__).parent / "data"


def small_phantom(dim: float = 1.0):
    return fmri_phantom(shape=(24, 24, 4), frames=60, dim=dim)


def region_course_correlation(decoded: np.ndarray, original: np.ndarray, region: np.ndarray) -> float:
    """Correlation of the region-mean time courses of two runs (x, y, z, time)."""
    return float(np.corrcoef(decoded[region].mean(axis=0), original[region].mean(axis=0))[0, 1])


def test_fastica_recovers_planted_sources():
    rng = np.random.default_rng(0)
    sources = rng.laplace(size=(3000, 3)) * (rng.random((3000, 3)) < 0.3)  # sparse, non-Gaussian maps
    courses = rng.normal(size=(3, 50))
    data = sources @ courses
    maps, patterns = fmri.fastica(data - data.mean(axis=0), 3)
    match = np.abs(np.corrcoef(maps.T, sources.T)[:3, 3:])
    assert match.max(axis=1).min() > 0.9
    np.testing.assert_allclose(maps @ patterns, data - data.mean(axis=0), atol=1e-8)


def test_phantom_has_the_designed_response():
    p = small_phantom()
    assert p.volume.data.dtype == np.int16 and p.volume.shape == (24, 24, 4, 60)
    assert p.volume.gradients is None and p.tr == 2.0
    task = p.volume.data[p.labels == 1].mean(axis=0)
    rest = p.volume.data[p.labels == 5].mean(axis=0)
    boxcar = np.zeros(60)
    for onset, duration, _ in p.events:
        boxcar[int(onset / p.tr):int((onset + duration) / p.tr)] = 1
    design = np.convolve(boxcar, hrf(p.tr))[:60]
    assert np.corrcoef(task, design)[0, 1] > 0.8
    assert abs(np.corrcoef(rest, design)[0, 1]) < 0.5


def test_round_trip_fits_the_run(tmp_path):
    p = small_phantom()
    archive = compress(p.volume, "fmri", QUICK)
    assert archive.manifest["slices"][1]["member"] == archive.manifest["slices"][0]["member"]
    decoded = decompress(archive)
    assert decoded.data.dtype == np.int16
    assert archive.manifest["metrics"]["psnr"] > 35.0  # the noise (σ = 1 % of the baseline) is ~41 dB
    brain = fmri_phantom(shape=(24, 24, 4), frames=60, noise=0.0).volume.data
    task = p.labels == 1
    truth, got = brain[task].mean(axis=0), decoded.data[task].mean(axis=0)
    assert np.corrcoef(truth, got)[0, 1] > 0.9  # the task response survives


def test_signal_mask_finds_slow_signal_not_white_noise():
    rng = np.random.default_rng(0)
    data = rng.normal(0.0, 1.0, (12, 12, 3, 60))
    data[0, 0, 0] = 7.0  # constant
    data[4:7, 4:7, 1] += 1.5 * np.sin(np.arange(60) / 4)  # slow signal, about as strong as the noise
    mask = fmri.signal_mask(data, 4.0)
    assert mask[4:7, 4:7, 1].all() and mask[4:7, 4:7, 0].any()  # and neighbours
    mask[3:8, 3:8, 0:3] = False
    assert not mask[0, 0, 0] and mask.sum() <= 27  # noise: at most one false alarm, grown by a voxel


def changed_runs():
    """(name, data) of the small phantom as denoising pipelines and odd scanners write it."""
    data = small_phantom().volume.data.astype(np.float64)
    mean, std = data.mean(axis=3, keepdims=True), data.std(axis=3, keepdims=True)
    percent = np.where(mean > 500, 100 * (data - mean) / mean, 0.0)  # in the brain, 0 outside (as pipelines do)
    return [("z-scored", (data - mean) / std), ("percent signal change", percent), ("all negative", -data - 2000)]


@pytest.mark.parametrize("index", range(3), ids=[name for name, _ in changed_runs()])
def test_zero_mean_and_negative_runs_keep_the_response(index):
    p = small_phantom()
    _, data = changed_runs()[index]
    volume = Volume4D(data.astype(np.float32), p.volume.ijk_to_ras)
    archive = compress(volume, "fmri", QUICK)
    to_bytes(archive)  # no NaN in the manifest
    decoded = decompress(archive).data.astype(np.float64)
    task = p.labels == 1
    assert region_course_correlation(decoded, data, task) > 0.9
    assert np.ptp(decoded[task], axis=1).min() > 0  # no task voxel decoded as a constant
    constants = sum(s["constant_voxels"] for s in archive.manifest["slices"])
    assert constants == int((np.ptp(decoded, axis=3) == 0).sum()) and 0 < constants < task.size


def test_a_constant_run_decodes_exactly():
    volume = Volume4D(np.full((8, 8, 2, 10), -3.5, np.float32), np.eye(4))
    archive = compress(volume, "fmri", QUICK)
    assert [s["constant_voxels"] for s in archive.manifest["slices"]] == [64, 64]
    assert archive.manifest["slices"][0]["components"] == 0
    np.testing.assert_array_equal(decompress(archive).data, volume.data)


def test_a_dim_region_keeps_its_response():
    p = small_phantom(dim=0.05)  # signal dropout: region 1's baseline at 5 %, its response as before
    archive = compress(p.volume, "fmri", QUICK)
    decoded = decompress(archive).data.astype(np.float64)
    clean = fmri_phantom(shape=(24, 24, 4), frames=60, dim=0.05, noise=0.0).volume.data
    dim = p.labels == 1
    assert p.volume.data[dim].mean() < 0.1 * p.volume.data[p.labels == 2].mean()
    assert np.ptp(decoded[dim], axis=1).min() > 0
    assert region_course_correlation(decoded, clean, dim) > 0.9


def test_version_0_3_archives_still_decode():
    """fmri-0.3.sirz: written by version 0.3 (mask = mean frame above a stored threshold, a two-part member);
    fmri-0.3-decoded.npy: what version 0.3 decoded from it."""
    archive = read_archive(DATA / "fmri-0.3.sirz")
    assert archive.manifest["library_version"] == "0.3.0" and "threshold" in archive.manifest["slices"][0]
    decoded = decompress(archive).data
    expected = np.load(DATA / "fmri-0.3-decoded.npy")
    assert decoded.dtype == expected.dtype and np.abs(decoded.astype(int) - expected).max() <= 1
    info = run_cli("info", DATA / "fmri-0.3.sirz", "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["constant_voxels"] is None


def test_cli_compresses_a_zero_mean_run_with_the_fmri_codec(tmp_path):
    data = small_phantom().volume.data.astype(np.float32)[:16, :16, :2]
    nifti, sirz = tmp_path / "zscored.nii.gz", tmp_path / "zscored.sirz"
    write_volume(Volume4D((data - data.mean(axis=3, keepdims=True)) / data.std(axis=3, keepdims=True),
                          np.eye(4)), nifti)
    result = run_cli("compress", nifti, "-o", sirz, "--epochs", "20", "--units", "16", "--layers", "2",
                     "--qat-epochs", "2", "--device", "cpu", "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert "codec: fmri" in result.stderr
    constants = json.loads(run_cli("info", sirz, "--json").stdout)["constant_voxels"]
    assert 0 < constants < 16 * 16 * 2
    assert f"voxels decoded as constants (no temporal signal found): {constants} of 512" in run_cli("info", sirz).stdout
    assert run_cli("decompress", sirz, "-o", tmp_path / "back.nii.gz", block_torch=True).returncode == 0


def test_decoding_needs_no_torch(tmp_path):
    p = small_phantom()
    nifti, sirz, back = tmp_path / "run.nii.gz", tmp_path / "run.sirz", tmp_path / "back.nii.gz"
    write_volume(p.volume, nifti)
    result = run_cli("compress", nifti, "-o", sirz, *QUICK_ARGS)
    assert result.returncode == 0, result.stderr
    assert "codec: fmri" in result.stderr  # suggested for a time series without gradients
    result = run_cli("decompress", sirz, "-o", back, block_torch=True)
    assert result.returncode == 0, result.stderr
    assert read_volume(back).shape == p.volume.shape
    info = json.loads(run_cli("info", sirz, "--json").stdout)
    assert info["codec"]["name"] == "fmri"


def test_cli_refuses_flags_of_other_codecs(tmp_path):
    nifti = tmp_path / "run.nii.gz"
    write_volume(small_phantom().volume, nifti)
    for flags, message in ((["--lr-decay", "cosine"], "does not apply to the fmri codec"),
                           (["--codec", "siren", "--components", "5"], "does not apply to the siren codec")):
        result = run_cli("compress", nifti, "-o", tmp_path / "x.sirz", *flags)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "x.sirz").exists()


def test_target_ratio_picks_the_units(tmp_path):
    from SirenCompressLib.rate import config_for_ratio

    volume = small_phantom().volume
    config = config_for_ratio(QUICK, volume, 40.0, "fmri")
    archive = compress(volume, "fmri", config)
    ratio = volume.data.size * 2 / len(to_bytes(archive))
    assert 36 < ratio < 44 and config.units != QUICK.units


def test_target_psnr_takes_the_smallest_member_that_reaches_it(monkeypatch):
    """Each probe is a whole encode and decode, scored as the archive's metrics score it; as even this network
    passes the target, the mean frame's step (`COARSER`) is then raised until the PSNR comes down to it, with
    the model trained once (it learns the series about the exact mean): the MSE lands within 5 % of the
    target's."""
    from SirenCompressLib.rate import config_for_psnr

    trainings = []
    fit = fmri._fit
    monkeypatch.setattr(fmri, "_fit", lambda *args: trainings.append(args[3]) or fit(*args))
    volume = small_phantom().volume
    config, probes = config_for_psnr(QUICK, volume, 40.5, "fmri", units=False)
    assert [p.weight_bits for p in probes[:2]] == [8, 6] and config.units == QUICK.units
    assert config.mean_step > QUICK.mean_step and len(probes) > 2 and all(p.coarser for p in probes[2:])
    assert [c.weight_bits for c in trainings] == [8, 6]  # the mean_step trials reuse a trained model
    chosen = next(p for p in probes if p.coarser == f"mean_step {config.mean_step:.4g}")
    assert config.weight_bits == chosen.weight_bits and chosen.bytes < min(p.bytes for p in probes[:2])
    archive = compress(volume, "fmri", config)
    assert archive.manifest["metrics"]["psnr"] == pytest.approx(chosen.psnr, abs=1e-9)
    assert 40.5 <= archive.manifest["metrics"]["psnr"] < 40.5 - 10 * np.log10(0.95)


def test_config_checks_and_json_round_trip():
    config = fmri.Config(components=12, units=64)
    assert fmri.Config.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(InputError):
        fmri.Config(fusion_kernel=4)
    with pytest.raises(InputError):
        compress(Volume4D(np.zeros((4, 4, 1, 2), np.int16), np.eye(4)), "fmri", QUICK)


def test_evaluate_fmri_reports_glm_and_connectivity(tmp_path):
    pytest.importorskip("nilearn", reason="evaluate --fmri needs nilearn (the fmri and test extras)")
    p = small_phantom()
    nifti, events, labels = tmp_path / "run.nii.gz", tmp_path / "events.tsv", tmp_path / "labels.nii.gz"
    write_volume(p.volume, nifti)
    p.write_events(events)
    write_volume(Volume4D(p.labels[..., None], p.volume.ijk_to_ras), labels)
    noisy = tmp_path / "noisy.nii.gz"
    rng = np.random.default_rng(0)
    write_volume(Volume4D((p.volume.data + rng.normal(0, 20, p.volume.shape)).astype(np.int16),
                          p.volume.ijk_to_ras), noisy)
    result = run_cli("evaluate", nifti, noisy, "--fmri", "--tr", "2", "--events", events, "--labels", labels, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 0.5 < report["z_correlation"] < 1.0 and report["z_mad"] > 0
    assert report["regions"] == 6 and 0 < report["connectivity_mad"] < 0.5
    same = json.loads(run_cli("evaluate", nifti, nifti, "--fmri", "--tr", "2", "--events", events, "--json").stdout)
    assert same["z_correlation"] == pytest.approx(1.0) and same["z_mad"] == 0
    from_header = json.loads(run_cli("evaluate", nifti, noisy, "--fmri", "--events", events, "--json").stdout)
    assert from_header["z_correlation"] == pytest.approx(report["z_correlation"])  # TR 2 s kept in the NIfTI
    untimed = tmp_path / "untimed.nii.gz"
    write_volume(Volume4D(p.volume.data, p.volume.ijk_to_ras), untimed)
    missing = run_cli("evaluate", untimed, noisy, "--fmri")
    assert missing.returncode == 2 and "--tr" in missing.stderr


def real_fmri_files() -> list:
    files = []
    for package, relative in (("nibabel", ("tests", "data", "functional.nii")), ("nitime", ("data", "fmri1.nii.gz"))):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            path = os.path.join(list(spec.submodule_search_locations)[0], *relative)
            if os.path.exists(path):
                files.append(path)
    return files


@pytest.mark.parametrize("name", ["nibabel functional.nii", "nitime fmri1.nii.gz"])
def test_real_fmri_files_round_trip(name, tmp_path):
    files = [f for f in real_fmri_files() if os.path.basename(f) == name.split()[1]]
    if not files:
        pytest.skip(f"{name.split()[0]} with its sample fMRI is not installed (the test extra installs it)")
    volume = read_volume(files[0], gradients=False)
    archive = compress(volume, "fmri", QUICK)
    decoded = decompress(archive)
    assert decoded.shape == volume.shape
    assert archive.manifest["metrics"]["psnr"] > 20.0


def test_training_ssim_matches_scikit_image():
    torch = pytest.importorskip("torch")
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    mask = rng.random((20, 18, 3)) > 0.3
    target = torch.as_tensor(rng.normal(size=(int(mask.sum()), 4)), dtype=torch.float32)
    pred = target + 0.5 * torch.as_tensor(rng.normal(size=tuple(target.shape)), dtype=torch.float32)
    span = float(target.max() - target.min())
    ssim = fmri._Ssim(mask.shape, torch.as_tensor(np.flatnonzero(mask.ravel())), span, "cpu")
    a, b = ssim.images(pred).numpy(), ssim.images(target).numpy()
    reference = np.mean([structural_similarity(b[i], a[i], data_range=span, gaussian_weights=True, sigma=1.5,
                                               use_sample_covariance=False, full=True)[1][3:-3, 3:-3].mean()
                         for i in range(len(a))])
    assert float(ssim(pred, target)) == pytest.approx(reference, abs=0.01)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_model_is_an_archive_error(damage):
    from SirenCompressLib.errors import ArchiveError

    archive = compress(small_phantom().volume, "fmri", QUICK)
    name = archive.manifest["slices"][0]["member"]
    member = bytearray(archive.members[name])
    if damage == "truncate":
        member = member[:-5]
    else:
        member[12] ^= 0xFF  # inside the mean frame's lossless stream
    archive.members[name] = bytes(member)
    with pytest.raises(ArchiveError):
        decompress(archive)
