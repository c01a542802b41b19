"""The noise estimate (`SirenCompressLib.noise`), its command, and a codec's error in units of the noise."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from SirenCompressLib import InputError, Volume4D, estimate_noise, write_volume
from SirenCompressLib.cli import main
from SirenCompressLib.noise import NoiseBound, noise_fraction, snr_loss
from SirenCompressLib.phantom import brain_phantom, dwi_phantom


def test_snr_loss_of_an_error_the_size_of_the_noise():
    assert noise_fraction(4.0, 2.0) == pytest.approx(1.0)
    assert snr_loss(4.0, 2.0) == pytest.approx(100 * (1 - 1 / math.sqrt(2)))
    assert snr_loss(0.0, 2.0) == 0.0
    assert snr_loss(0.1, 1.0) == pytest.approx(4.654, abs=1e-3)


def test_snr_loss_from_the_metrics_scaled_mse():
    # Metrics.mse is in units of the range²: D = 1e-6 · 1000² = 1 = σ²
    assert noise_fraction(1e-6, 1.0, data_range=1000.0) == pytest.approx(1.0)
    assert snr_loss(1e-6, 1.0, data_range=1000.0) == pytest.approx(snr_loss(1.0, 1.0))


@pytest.mark.parametrize("mse, sigma", [(1.0, 0.0), (-1.0, 1.0)])
def test_snr_loss_refuses_nonsense(mse, sigma):
    with pytest.raises(ValueError, match="σ > 0"):
        snr_loss(mse, sigma)


def noisy_ring(kind: str, snr: float, shape=(32, 32, 4), directions=30, seed=0) -> tuple[np.ndarray, float]:
    """The ring phantom (1 + 2 shells × `directions` volumes, b=0 signal 1000) with noise of σ = 1000 / snr."""
    clean = dwi_phantom(shape=shape, directions=directions, bvalues=(1000.0, 2000.0), dtype="float32").data
    sigma = 1000 / snr
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0, sigma, clean.shape)
    if kind == "rician":
        noisy = np.hypot(noisy, rng.normal(0, sigma, clean.shape))
    return noisy.astype(np.float32), sigma


@pytest.mark.parametrize("kind, snr, shape, directions", [
    ("gaussian", 10, (32, 32, 4), 30), ("rician", 10, (24, 24, 2), 15), ("rician", 20, (48, 48, 3), 30),
    ("rician", 50, (32, 32, 4), 30), ("gaussian", 50, (40, 32, 2), 15)])
def test_sigma_within_10_percent_on_the_ring_phantom(kind, snr, shape, directions):
    data, sigma = noisy_ring(kind, snr, shape, directions)
    noise = estimate_noise(data)
    assert noise.sigma == pytest.approx(sigma, rel=0.1)
    assert noise.rician == (kind == "rician")  # Gaussian noise leaves negative voxels: not magnitudes
    assert all(s == pytest.approx(sigma, rel=0.2) for s in noise.slice_sigmas)


def test_sigma_within_10_percent_on_the_brain_phantom():
    pytest.importorskip("nilearn")
    phantom = brain_phantom((36, 36, 8), directions=20, b0s=3, snr=30)
    noise = estimate_noise(phantom.volume)  # Volume4D, int16, Rician
    assert noise.sigma == pytest.approx(phantom.sigma, rel=0.1) and noise.rician


def test_the_estimate_says_what_it_used():
    data, sigma = noisy_ring("rician", 20, (32, 32, 2), 15)
    noise = estimate_noise(data)
    assert len(noise.slice_sigmas) == 2 and 0 < noise.voxels < 32 * 32 * 2 and noise.blocks > 0
    assert noise.mask.startswith("Otsu") and "Marchenko–Pastur" in noise.method and "Koay" in noise.method
    lo, hi = float(data.min()), float(data.max())
    assert noise.noise_psnr == pytest.approx(NoiseBound(noise.sigma, hi - lo).noise_psnr)
    assert noise.percent_of_range == pytest.approx(100 * noise.sigma / (hi - lo))
    assert json.loads(json.dumps(noise.to_json()))["bound_psnr"]["80"] == pytest.approx(noise.bound.psnr(80))


def test_a_given_mask_is_used():
    data, sigma = noisy_ring("gaussian", 20, (32, 32, 2), 15)
    whole = estimate_noise(data, mask=np.ones(data.shape[:3]))
    assert whole.mask == "given" and whole.voxels == 32 * 32 * 2 and whole.sigma == pytest.approx(sigma, rel=0.1)
    with pytest.raises(InputError, match="the mask is 4×4×2"):
        estimate_noise(data, mask=np.ones((4, 4, 2)))


@pytest.mark.parametrize("data, message", [
    (np.ones((8, 8, 8)), "needs 4D data"),
    (np.ones((8, 8, 2, 5)), "at least 10 volumes"),
    (np.full((8, 8, 2, 12), np.nan), "finite"),
    (dwi_phantom(shape=(24, 24, 2), directions=15, dtype="float32").data, "no noise found"),
    (dwi_phantom(shape=(24, 24, 2), directions=15).data, "integer rounding"),  # int16, noise-free
])
def test_bad_input_is_one_clear_error(data, message):
    with pytest.raises(InputError, match=message):
        estimate_noise(data)


def test_noise_command(tmp_path, capsys):
    data, sigma = noisy_ring("rician", 20, (32, 32, 2), 15)
    path = tmp_path / "dwi.nii.gz"
    write_volume(Volume4D(data), path)
    assert main(["noise", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("noise σ ") and "% of the range" in lines[0] and "noise PSNR" in lines[0]
    assert lines[1].startswith("per slice: σ ") and "at CR 80" in lines[2] and lines[3].startswith("method: ")
    assert main(["noise", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sigma"] == pytest.approx(sigma, rel=0.1) and len(report["slice_sigmas"]) == 2


@pytest.mark.parametrize("data, message", [
    (np.zeros((8, 8, 2, 12), np.int16), "no noise found"), (np.zeros((8, 8, 2, 3), np.int16), "at least 10 volumes")])
def test_noise_command_refuses_bad_input_with_exit_2(tmp_path, capsys, data, message):
    path = tmp_path / "bad.nii.gz"
    write_volume(Volume4D(data), path)
    assert main(["noise", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
