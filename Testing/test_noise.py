"""The noise estimate (`SirenCompressLib.noise`), its command, and a codec's error in units of the noise."""

from __future__ import annotations

import math

import pytest

from SirenCompressLib.noise import noise_fraction, snr_loss


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
