"""Classical codec baselines (imagecodecs) on integer 4D data, sized to match a target number of bytes.

Layouts: "per-image" codes each 2D image (one slice of one volume) on its own; "tiled" puts all volumes
of a slice side by side in one mosaic image per slice, so the codec sees them together.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass

import numpy as np

LAYOUTS = ("per-image", "tiled")


@dataclass
class Coded:
    """A baseline's result: total bytes, the decoded array, and the codec parameter used."""

    name: str
    nbytes: int
    decoded: np.ndarray
    parameter: float | None = None


def gzip_coded(data: np.ndarray, level: int = 6) -> Coded:
    """gzip of the raw little-endian voxel bytes (lossless)."""
    return Coded(f"gzip -{level}", len(gzip.compress(data.tobytes(), compresslevel=level, mtime=0)), data)


def jpeg2000(data: np.ndarray, level: float, layout: str) -> Coded:
    """JPEG 2000 of every slice at fixed quality `level` (OpenJPEG's PSNR target, dB)."""
    import imagecodecs

    decoded = np.empty_like(data)
    nbytes = 0
    for z in range(data.shape[2]):
        images = [data[:, :, z, v] for v in range(data.shape[3])] if layout == "per-image" else [mosaic(data[:, :, z])]
        out = []
        for image in images:
            code = imagecodecs.jpeg2k_encode(np.ascontiguousarray(image), level=level)
            nbytes += len(code)
            out.append(imagecodecs.jpeg2k_decode(code))
        decoded[:, :, z] = np.stack(out, axis=-1) if layout == "per-image" else unmosaic(out[0], data.shape[3])
    return Coded(f"JPEG 2000 {layout}", nbytes, decoded, level)


def jpeg2000_at_size(data: np.ndarray, target_bytes: int, layout: str, tolerance: float = 0.01) -> Coded:
    """JPEG 2000 with the quality bisected until the total size is within `tolerance` of the target
    (or as close as 30 steps get, staying at or below the target when it cannot be met exactly)."""
    lo, hi = 1.0, 200.0
    best = None
    for _ in range(30):
        level = (lo + hi) / 2
        coded = jpeg2000(data, level, layout)
        if coded.nbytes <= target_bytes and (best is None or coded.nbytes > best.nbytes):
            best = coded
        if abs(coded.nbytes - target_bytes) <= tolerance * target_bytes:
            return coded
        lo, hi = (level, hi) if coded.nbytes < target_bytes else (lo, level)
    return best if best is not None else coded


def mosaic(slice_xyv: np.ndarray) -> np.ndarray:
    """Tile the V images (x, y) of one slice into a near-square grid, zero-padded."""
    nx, ny, nv = slice_xyv.shape
    cols = math.ceil(math.sqrt(nv))
    rows = math.ceil(nv / cols)
    out = np.zeros((rows * nx, cols * ny), dtype=slice_xyv.dtype)
    for v in range(nv):
        r, c = divmod(v, cols)
        out[r * nx:(r + 1) * nx, c * ny:(c + 1) * ny] = slice_xyv[:, :, v]
    return out


def unmosaic(image: np.ndarray, nv: int) -> np.ndarray:
    """Inverse of `mosaic`."""
    cols = math.ceil(math.sqrt(nv))
    rows = math.ceil(nv / cols)
    nx, ny = image.shape[0] // rows, image.shape[1] // cols
    return np.stack([image[(v // cols) * nx:(v // cols + 1) * nx, (v % cols) * ny:(v % cols + 1) * ny]
                     for v in range(nv)], axis=-1)
