"""The noise level of 4D data (`estimate_noise`, `sirencompress noise`), the bound it puts on any codec's PSNR
(`NoiseBound`, drawn by `sirencompress bench`), and a codec's error in units of that noise (`snr_loss`)."""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError
from .metrics import value_range
from .volume import Volume4D

GLOBAL_BLOCKS = 500  # blocks enough for the global σ (within 0.1 % of all 2,315 on the full-size phantom, 5× faster)
MIN_VOLUMES = 10  # fewer leave too few eigenvalues to tell the noise's Marchenko–Pastur spread from signal


def estimate_sigma(data: np.ndarray) -> float:
    """The noise standard deviation of 4D data by Marchenko–Pastur PCA, over the voxels × volumes of each slice.

    For each axial slice, the eigenvalues of the volumes' covariance over its voxels are split into signal and
    noise by the Marchenko–Pastur criterion of MP-PCA (Veraart et al., "Denoising of diffusion MRI using random
    matrix theory", NeuroImage 142, 2016; the form of its equation 12 that dipy's `mppca` uses): the most
    eigenvalues whose spread stays within the Marchenko–Pastur width of their mean are noise, and that mean is
    the noise variance (`marchenko_pastur_variance`). The result is the square root
    of the median over slices.

    It estimates the noise as it is in all the voxels, that is where a codec spends bits on it (the transform
    codec's quantiser step is this σ), not the scanner's σ in the tissue (`estimate_noise`): for magnitude data
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
    return _marchenko_pastur(values, samples)[0]


def _marchenko_pastur(values: np.ndarray, samples: int) -> tuple[float, int]:
    """`marchenko_pastur_variance` of eigenvalues that are all noise candidates, and how many of the largest are
    signal."""
    n = np.arange(1, values.size + 1)
    means = np.cumsum(values) / n
    noise = np.flatnonzero((values - values[0] <= 4 * np.sqrt(n / samples) * means) | (n == 1))[-1]
    return float(means[noise]), values.size - 1 - int(noise)


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

    def psnr_at_fraction(self, fraction: float) -> float:
        """The PSNR of a codec whose mean squared error is `fraction`·σ²: noise PSNR − 10·log10(fraction), in dB.

        Parameters
        ----------
        fraction : float
            D / σ², positive (`noise_fraction`).

        Returns
        -------
        float

        Raises
        ------
        ValueError
            When `fraction` is not positive.
        """
        if not fraction > 0:
            raise ValueError(f"the noise fraction must be positive, got {fraction}")
        return self.noise_psnr - 10 * math.log10(fraction)


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



@dataclass(frozen=True)
class NoiseEstimate:
    """The noise of a 4D image, from `estimate_noise`.

    Attributes
    ----------
    sigma : float
        The noise standard deviation in data units: for magnitude data the σ of the Gaussian noise of each
        channel before the magnitude (Rician noise's parameter), else the noise's standard deviation.
    slice_sigmas : tuple of (float or None)
        σ per axial slice (z), None where a slice has no block of foreground.
    data_range : float
        The data's maximum − minimum, the range of the project's PSNR (`SirenCompressLib.metrics`).
    method : str
        How σ was found, in words.
    voxels : int
        The foreground voxels the estimate used.
    blocks : int
        The blocks of voxels it used (σ is the root of their median noise variance).
    mask : str
        Where the foreground came from: "given", or the Otsu threshold of the mean over volumes.
    rician : bool
        Whether the Rician bias of magnitude data was corrected.
    """

    sigma: float
    slice_sigmas: tuple[float | None, ...]
    data_range: float
    method: str
    voxels: int
    blocks: int
    mask: str
    rician: bool

    @property
    def bound(self) -> NoiseBound:
        """The Shannon bound of coding this noise (`NoiseBound`)."""
        return NoiseBound(self.sigma, self.data_range)

    @property
    def noise_psnr(self) -> float:
        """The PSNR of the noise itself in the project's definition, 20·log10(range / σ), in dB."""
        return self.bound.noise_psnr

    @property
    def percent_of_range(self) -> float:
        """σ as a percentage of the data's range."""
        return 100 * self.sigma / self.data_range

    def to_json(self) -> dict:
        """The fields and the derived values as a JSON-safe dict.

        Returns
        -------
        dict
            The attributes, `noise_psnr`, `percent_of_range`, and `bound_psnr`: the bound in dB at compression
            ratios 10, 20, 40 and 80 of 16-bit data.
        """
        return {**asdict(self), "slice_sigmas": list(self.slice_sigmas), "noise_psnr": self.noise_psnr,
                "percent_of_range": self.percent_of_range,
                "bound_psnr": {f"{r:g}": self.bound.psnr(r) for r in (10, 20, 40, 80)}}


def estimate_noise(volume: Volume4D | np.ndarray, mask: np.ndarray | None = None,
                   rician: bool | None = None, most_blocks: int | None = None) -> NoiseEstimate:
    """The noise σ of a 4D image (diffusion, functional, any series of volumes), globally and per slice.

    Marchenko–Pastur PCA (MP-PCA; Veraart et al., "Denoising of diffusion MRI using random matrix theory",
    NeuroImage 142, 2016) in local blocks: each axial slice is cut into square blocks of side ⌈2√V⌉ for V
    volumes (half-overlapping; about 4·V voxels, so that the noise eigenvalues spread as Marchenko–Pastur
    predicts), and in each block with at least half its voxels in the foreground, the eigenvalues of the
    foreground voxels' covariance over the volumes are split into signal and noise by the criterion of
    `marchenko_pastur_variance` (with the roles of voxels and volumes swapped when a block has fewer voxels
    than volumes). σ² is the median of the blocks' noise variances, per slice and over all blocks.

    Background: without a mask, the foreground is where the mean over volumes (for diffusion data mostly the
    b=0 and low-b signal) exceeds its Otsu threshold (scikit-image's `threshold_otsu`), so that a zero-filled
    or masked background, which holds no noise, does not pull σ down.

    Rician bias: magnitude images (no negative voxel) hold Rician noise, whose variance is ξ(θ)·σ² at SNR θ
    (Koay & Basser, "Analytically exact correction scheme for signal extraction from noisy magnitude MR
    signals", J Magn Reson 179, 2006, their correction factor ξ), down to 0.43·σ² where there is no signal.
    The block's MP-PCA estimate is the mean of that variance over its voxels and volumes, so it is divided
    by the mean ξ over the block's measurements, with θ of each from its MP-PCA reconstruction (the signal
    components) through the Rician mean; four fixed-point rounds. This matters in dim voxels: high
    b-values, CSF at b ≥ 1000 s/mm², the background.

    Measured on phantoms of known σ (Gaussian and Rician noise, SNR 10–50, `dwi_phantom` 32×32×4 to
    64×64×4 × 61 volumes and `brain_phantom` 52×52×36 × 105 volumes): within 5 % (`Testing/test_noise.py`
    keeps a few of them within 10 %).

    Parameters
    ----------
    volume : Volume4D or ndarray, shape (x, y, z, volumes)
        Any real dtype.
    mask : ndarray or None, shape (x, y, z)
        The foreground (non-zero inside); None: the Otsu threshold of the mean over volumes.
    rician : bool or None
        Whether the data are magnitudes with Rician noise; None: when no voxel is negative.
    most_blocks : int or None
        Use at most this many blocks, evenly spread over the volume's (faster on large volumes; slices
        without a block then have no σ of their own); None: all.

    Returns
    -------
    NoiseEstimate

    Raises
    ------
    InputError
        When the data are not 4D, have fewer than `MIN_VOLUMES` volumes, hold NaN or Inf, the mask's shape
        differs or it leaves too few voxels, or no noise is found (noise-free data; integer data whose σ is
        below half a unit, that is no more than the rounding's).
    """
    data = np.asarray(volume.data if isinstance(volume, Volume4D) else volume)
    if data.ndim != 4:
        raise InputError(f"the noise estimate needs 4D data (x, y, z, volumes), got {data.ndim}D")
    nx, ny, nz, nv = data.shape
    if nv < MIN_VOLUMES:
        raise InputError(f"the noise estimate needs at least {MIN_VOLUMES} volumes to tell noise from signal, "
                         f"got {nv}")
    if data.dtype.kind not in "iuf" or not np.isfinite(data).all():
        raise InputError("the noise estimate needs real, finite voxels (no NaN or Inf)")
    if mask is None:
        inside, source = foreground(data), "Otsu threshold of the mean over volumes"
    else:
        inside, source = np.asarray(mask) != 0, "given"
        if inside.shape != data.shape[:3]:
            raise InputError(f"the mask is {'×'.join(map(str, inside.shape))}, the image "
                             f"{'×'.join(map(str, data.shape[:3]))}")
    rician = bool(data.min() >= 0) if rician is None else rician
    side = min(math.ceil(2 * math.sqrt(nv)), nx, ny)
    step = max(side // 2, 1)
    blocks = []
    for z in range(nz):
        for x in _starts(nx, side, step):
            for y in _starts(ny, side, step):
                block_mask = inside[x:x + side, y:y + side, z]
                if 2 * block_mask.sum() >= side * side and block_mask.sum() >= 3:
                    blocks.append((x, y, z))
    if most_blocks is not None and len(blocks) > most_blocks:
        blocks = [blocks[i] for i in np.linspace(0, len(blocks) - 1, most_blocks).round().astype(int)]
    variances, slices = [], []
    used = np.zeros(inside.shape, bool)
    for x, y, z in blocks:
        block_mask = inside[x:x + side, y:y + side, z]
        variances.append(_block_variance(data[x:x + side, y:y + side, z][block_mask], rician))
        slices.append(z)
        used[x:x + side, y:y + side, z] |= block_mask
    if not variances:
        raise InputError(f"too few foreground voxels for the noise estimate: it needs blocks of {side}×{side} "
                         "voxels at least half inside")
    variances, slices = np.asarray(variances), np.asarray(slices)
    sigma = math.sqrt(max(float(np.median(variances)), 0.0))  # MP-PCA's noise variance may come out below 0
    lo, hi = value_range(data)
    if sigma <= 1e-6 * (hi - lo) or (data.dtype.kind in "iu" and sigma < 0.5):
        raise InputError(f"no noise found (σ {sigma:.3g}"
                         + (", no more than the integer rounding's)" if data.dtype.kind in "iu" else ")")
                         + ": the image looks noise-free")
    per_slice = tuple(math.sqrt(max(float(np.median(variances[slices == z])), 0.0)) if (slices == z).any() else None
                      for z in range(nz))
    method = (f"Marchenko–Pastur PCA (Veraart et al. 2016) in {side}×{side}-voxel blocks of each slice"
              + (", Koay–Basser Rician correction" if rician else ""))
    return NoiseEstimate(sigma, per_slice, float(hi - lo), method, int(used.sum()), len(variances), source, rician)


def foreground(data: np.ndarray) -> np.ndarray:
    """The voxels whose mean over volumes exceeds its Otsu threshold (the image's bright part: tissue).

    Parameters
    ----------
    data : ndarray, shape (x, y, z, volumes)

    Returns
    -------
    ndarray of bool, shape (x, y, z)
        All True when the mean is constant.
    """
    from skimage.filters import threshold_otsu

    mean = data.mean(axis=3, dtype=np.float64)
    if mean.min() == mean.max():
        return np.ones(mean.shape, bool)
    return mean > threshold_otsu(mean.ravel())


def _starts(size: int, side: int, step: int) -> list[int]:
    """Where blocks of `side` start along an axis of `size`, every `step` and flush with its end."""
    return sorted({*range(0, size - side + 1, step), size - side})


def _block_variance(block: np.ndarray, rician: bool) -> float:
    """The noise variance of one block, (voxels, volumes): MP-PCA, Rician-corrected (see `estimate_noise`)."""
    block = block.astype(np.float64)
    n, nv = block.shape
    mean = block.mean(axis=0)
    centred = block - mean
    p, q = min(n - 1, nv), max(n - 1, nv)  # the nonzero eigenvalues, and the dimension they spread over
    values, vectors = np.linalg.eigh(centred.T @ centred / q)
    variance, signal = _marchenko_pastur(values[-p:], q)
    if not rician or variance <= 0:
        return variance
    components = vectors[:, nv - signal:]
    fit = (mean + centred @ components @ components.T).ravel()  # each measurement's expected magnitude
    means, xi = _rician_tables()
    sigma2 = variance
    for _ in range(4):
        dim = fit[fit < means[-1] * math.sqrt(sigma2)] / math.sqrt(sigma2)  # ξ > 0.998 above
        sigma2 = variance / (1 - float(np.sum(1 - np.interp(dim, means, xi))) / fit.size)
    return sigma2


@functools.cache
def _rician_tables() -> tuple[np.ndarray, np.ndarray]:
    """E[m]/σ and ξ of Rician magnitudes m at SNR θ = 0 … 20 (Koay & Basser 2006, equations 11 and 18)."""
    from scipy.special import i0e, i1e

    theta = np.linspace(0.0, 20.0, 401)
    t = theta**2 / 4
    bessel = (2 + theta**2) * i0e(t) + theta**2 * i1e(t)  # e^{-θ²/4}-scaled, as both formulas need
    return math.sqrt(math.pi / 2) * bessel / 2, 2 + theta**2 - math.pi / 8 * bessel**2
