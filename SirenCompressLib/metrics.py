"""Error metrics, with one definition used everywhere (code, docs, benchmarks).

Original and decoded data are both scaled with the original's global minimum and maximum to [0, 1].
MSE is the mean squared difference over the voxels considered; PSNR = 20·log10(1 / RMSE) (infinite when
the two are equal); SSIM is scikit-image's with data_range 1, averaged over the 2D images (one per slice
and volume). Per slice means over that slice's voxels, with the same global scaling.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError


@dataclass
class Metrics:
    mse: float
    psnr: float  # dB; inf when identical
    ssim: float | None  # None when the images are too small for a 3×3 window

    def to_json(self) -> dict:
        """JSON-safe dict: an infinite PSNR is written as null."""
        d = asdict(self)
        d["psnr"] = None if math.isinf(self.psnr) else self.psnr
        return d

    @classmethod
    def from_json(cls, d: dict) -> Metrics:
        """The metrics from `to_json`'s dict (a null PSNR is infinite).

        Parameters
        ----------
        d : dict

        Returns
        -------
        Metrics
        """
        psnr = math.inf if d.get("psnr") is None else float(d["psnr"])
        ssim = None if d.get("ssim") is None else float(d["ssim"])
        return cls(float(d["mse"]), psnr, ssim)


@dataclass
class Comparison:
    """Per-slice and whole-volume metrics of a decoded 4D image against its original."""

    slices: list[Metrics]
    whole: Metrics


def value_range(data: np.ndarray) -> tuple[float, float]:
    """The global (min, max) used to scale both images to [0, 1].

    Parameters
    ----------
    data : ndarray

    Returns
    -------
    lo, hi : float or int
        Exact Python ints for integer data.
    """
    if data.dtype.kind in "iu":
        return int(data.min()), int(data.max())
    return float(data.min()), float(data.max())


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of images scaled to [0, 1]: −10·log10(MSE), infinite for MSE 0.

    Parameters
    ----------
    mse : float

    Returns
    -------
    float
    """
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)


def slice_metrics(original: np.ndarray, decoded: np.ndarray, lo: float, hi: float) -> Metrics:
    """Metrics of one axial slice, both scaled to [0, 1] with the whole volume's range [lo, hi].

    SSIM is the mean over volumes of scikit-image's `structural_similarity` (Wang et al., "Image quality
    assessment: from error visibility to structural similarity", IEEE TIP 2004) with a 7×7 window, smaller
    for small slices.

    Parameters
    ----------
    original, decoded : ndarray, shape (x, y, volumes)
    lo, hi : float
        The original volume's value range.

    Returns
    -------
    Metrics
        SSIM None when the slice is smaller than 3×3.
    """
    a, b = _scaled(original, lo, hi), _scaled(decoded, lo, hi)
    mse = float(np.mean((a - b) ** 2))
    return Metrics(mse, psnr_from_mse(mse), _mean_ssim(a, b))


def compare(original: np.ndarray, decoded: np.ndarray) -> Comparison:
    """Per-slice and whole metrics of a decoded 4D image against its original.

    Parameters
    ----------
    original, decoded : ndarray, shape (x, y, z, volumes)

    Returns
    -------
    Comparison

    Raises
    ------
    InputError
        When the shapes differ.
    """
    if original.shape != decoded.shape:
        raise InputError(f"shapes differ: original {'×'.join(map(str, original.shape))}, "
                         f"decoded {'×'.join(map(str, decoded.shape))}")
    lo, hi = value_range(original)
    slices = [slice_metrics(original[:, :, z], decoded[:, :, z], lo, hi) for z in range(original.shape[2])]
    return Comparison(slices, combine(slices))


def combine(slices: list[Metrics]) -> Metrics:
    """Whole-volume metrics from per-slice ones (all slices have the same number of voxels).

    Parameters
    ----------
    slices : list of Metrics

    Returns
    -------
    Metrics
        The mean MSE, its PSNR, and the mean of the slices' SSIMs (None if none has one).
    """
    mse = float(np.mean([m.mse for m in slices]))
    ssims = [m.ssim for m in slices if m.ssim is not None]
    return Metrics(mse, psnr_from_mse(mse), float(np.mean(ssims)) if ssims else None)


def _scaled(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    return (np.asarray(x, dtype=np.float64) - lo) / span


def _mean_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    from skimage.metrics import structural_similarity

    side = min(a.shape[0], a.shape[1])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return None
    values = [structural_similarity(a[:, :, v], b[:, :, v], data_range=1.0, win_size=win)
              for v in range(a.shape[2])]
    return float(np.mean(values))
