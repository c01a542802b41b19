"""The fmri codec: ICA finds planted sources, runs round-trip through numpy-only decoding, the CLI picks the
codec for time series, and `evaluate --fmri` measures GLM and connectivity changes; real fMRI smoke tests."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from conftest import run_cli
from SirenCompressLib import Volume4D, read_volume, write_volume
from SirenCompressLib.archive import to_bytes
from SirenCompressLib.codecs import fmri
from SirenCompressLib.errors import InputError
from SirenCompressLib.fmri_phantom import fmri_phantom, hrf
from SirenCompressLib.pipeline import compress, decompress

QUICK = fmri.Config(units=32, layers=2, epochs=60, qat_epochs=10, device="cpu")
QUICK_ARGS = ["--units", "32", "--layers", "2", "--epochs", "60", "--qat-epochs", "10", "--device", "cpu",
              "--progress", "none"]


def small_phantom():
    return fmri_phantom(shape=(24, 24, 4), frames=60)


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
                           (["--codec", "siren", "--components", "5"], "applies to the fmri codec only"),
                           (["--target-psnr", "40"], "works with the siren codec")):
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
    missing = run_cli("evaluate", nifti, noisy, "--fmri")
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
