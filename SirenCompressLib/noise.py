"""The noise level of 4D data, the bound it puts on any codec's PSNR (drawn by `sirencompress bench`), and a
codec's error in units of that noise (the SNR it costs)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError


def estimate_sigma(data: np.ndarray) -> float:
    """The noise standard deviation of 4D data by Marchenko–Pastur PCA, over the voxels × volumes of each slice.

    For each axial slice, the eigenvalues of the volumes' covariance over its voxels are split into signal and
    noise by the Marchenko–Pastur criterion of MP-PCA (Veraart et al., "Denoising of diffusion MRI using random
    matrix theory", NeuroImage 142, 2016; the form of its equation 12 that dipy's `mppca` uses): the most
    eigenvalues whose spread stays within the Marchenko–Pastur width of their mean are noise, and that mean is
    the noise variance (`marchenko_pastur_variance`). The result is the square root
    of the median over slices.

    It estimates the noise as it is in the voxels, that is where a codec spends bits on it: for magnitude data
    with Rician noise of parameter σ, less than σ in the background (Rayleigh, standard deviation 0.655 σ). On
    `sirencompress bench --phantom` (σ = 20) it gives 16.5, against 16.7 for the root mean square over voxels
    of the noise about each voxel's expected value (measured over 12 noise draws); scikit-image's wavelet
    estimate (`skimage.restoration.estimate_sigma`, Donoho's median absolute deviation of the finest diagonal
    wavelet band), median over the 2D images, gives 18.6 there.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, volumes)
        Any real dtype.

    Returns
    -------
    float
        The noise standard deviation, in the data's units.

    Raises
    ------
    InputError
        Unless the data are 4D with at least 2 volumes.
    """
    if data.ndim != 4 or data.shape[3] < 2:
        raise InputError("the noise estimate needs 4D data with at least 2 volumes")
    nx, ny, nz, nv = data.shape
    variances = []
    for z in range(nz):
        x = data[:, :, z].reshape(nx * ny, nv).astype(np.float64)
        x -= x.mean(axis=0)
        variance = marchenko_pastur_variance(np.linalg.eigvalsh(x.T @ x / x.shape[0]), x.shape[0])
        variances.append(variance)
    return math.sqrt(max(float(np.median(variances)), 0.0))


def marchenko_pastur_variance(eigenvalues: np.ndarray, samples: int) -> float:
    """The noise variance from the eigenvalues of a sample covariance (Veraart et al. 2016, see `estimate_sigma`).

    With the eigenvalues ascending, λ_1 ≤ … ≤ λ_M, the noise ones are the first n for the largest n with
    λ_n − λ_1 ≤ 4·√(n / samples)·mean(λ_1 … λ_n); that mean is returned.

    Parameters
    ----------
    eigenvalues : ndarray, shape (M,)
        Of the covariance of `samples` centred observations, ascending.
    samples : int
        The number of observations (voxels).

    Returns
    -------
    float
    """
    values = np.asarray(eigenvalues, dtype=np.float64)[-max(samples - 1, 1):]  # the centring's zero is no noise
    n = np.arange(1, values.size + 1)
    means = np.cumsum(values) / n
    noise = values - values[0] <= 4 * np.sqrt(n / samples) * means
    return float(means[np.flatnonzero(noise)[-1]])


@dataclass(frozen=True)
class NoiseBound:
    """The Shannon bound of coding white Gaussian noise of standard deviation `sigma`, as a PSNR.

    At R bits per voxel the least mean squared error is σ²·2^(−2R), so no codec of data holding such noise
    reaches more than PSNR = 20·log10(range / σ) + 20·log10(2)·R (6.02 dB per bit), with the range of the
    PSNR's definition (`SirenCompressLib.metrics`: the data's maximum − minimum).

    Attributes
    ----------
    sigma : float
        The noise standard deviation (`estimate_sigma`).
    data_range : float
        The data's maximum − minimum.
    """

    sigma: float
    data_range: float

    @property
    def noise_psnr(self) -> float:
        """The PSNR of the noise itself, 20·log10(range / σ), in dB."""
        return 20 * math.log10(self.data_range / self.sigma)

    def psnr(self, ratio: float, bits: int = 16) -> float:
        """The bound in dB at a compression ratio.

        Parameters
        ----------
        ratio : float
            Raw bytes over coded bytes.
        bits : int
            Bits per raw voxel: R = bits / ratio.

        Returns
        -------
        float
        """
        return self.noise_psnr + 20 * math.log10(2) * bits / ratio


def noise_fraction(mse: float, sigma: float, data_range: float | None = None) -> float:
    """A codec's added error as a fraction of the noise variance, D / σ².

    Parameters
    ----------
    mse : float
        The codec's mean squared error D: in squared data units, or, with `data_range`, in the units of
        `SirenCompressLib.metrics` (both images scaled to [0, 1] by the original's range, as `Metrics.mse`).
    sigma : float
        The noise standard deviation, in data units (`estimate_noise`).
    data_range : float or None
        The original's maximum − minimum, when `mse` is scaled by it.

    Returns
    -------
    float
        D / σ² (0 for a lossless codec; 1: the codec adds as much error as the scanner's noise).

    Raises
    ------
    ValueError
        When `sigma` is not positive or `mse` is negative.
    """
    if not sigma > 0 or mse < 0:
        raise ValueError(f"the noise fraction needs σ > 0 and MSE ≥ 0, got σ = {sigma}, MSE = {mse}")
    scale = 1.0 if data_range is None else data_range**2
    return mse * scale / sigma**2


def snr_loss(mse: float, sigma: float, data_range: float | None = None) -> float:
    """The SNR a codec costs, in per cent: 100·(1 − 1/√(1 + D/σ²)).

    The codec's error D adds to the scanner's noise variance σ² (the two are independent), so the noise
    standard deviation grows from σ to √(σ² + D) and every voxel's SNR shrinks by that factor. D = σ²/10
    costs 4.65 %, D = σ² 29.3 %.

    Parameters
    ----------
    mse : float
        The codec's mean squared error D (see `noise_fraction` for its units).
    sigma : float
        The noise standard deviation, in data units (`estimate_noise`).
    data_range : float or None
        The original's maximum − minimum, when `mse` is scaled by it (`Metrics.mse`).

    Returns
    -------
    float
        Per cent, in [0, 100).

    Raises
    ------
    ValueError
        When `sigma` is not positive or `mse` is negative.
    """
    return 100 * (1 - 1 / math.sqrt(1 + noise_fraction(mse, sigma, data_range)))
