"""A synthetic diffusion MRI phantom for tests and benchmarks (diffusion tensor model, known ground truth).

An elliptical "brain" of grey matter (isotropic), a ring of white matter whose fibres run around the
ring (anisotropic), and CSF "ventricles" (fast isotropic diffusion), on a zero background.
"""

from __future__ import annotations

import numpy as np

from .volume import Gradients, Volume4D

GM_DIFFUSIVITY = 0.8e-3  # mm²/s
CSF_DIFFUSIVITY = 3.0e-3
WM_EIGENVALUES = (1.7e-3, 0.3e-3, 0.3e-3)


def hemisphere_directions(n: int) -> np.ndarray:
    """`n` unit vectors spread over the upper half sphere (Fibonacci lattice), (n, 3)."""
    i = np.arange(n) + 0.5
    z = 1.0 - i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def dwi_phantom(shape: tuple[int, int, int] = (32, 32, 4), directions: int = 12,
                bvalues: tuple[float, ...] = (1000.0,), b0s: int = 1, s0: float = 1000.0,
                noise: float = 0.0, dtype: str = "int16", seed: int = 0) -> Volume4D:
    """A DWI phantom with `b0s` b=0 volumes and `directions` gradients per non-zero b-value.

    `noise` is the Rician noise level relative to `s0` (0 gives the noise-free phantom; with the same
    `seed` the noisy and noise-free phantoms share everything else). Voxels 2 mm isotropic, LAS orientation
    (IJK→RAS with a negative determinant), so that the FSL b-vectors are the gradient directions in voxel
    axes, the frame of `tissue_tensors`.
    """
    nx, ny, nz = shape
    dirs = hemisphere_directions(directions)
    bvals = np.concatenate([np.zeros(b0s)] + [np.full(directions, b) for b in bvalues])
    bvecs = np.concatenate([np.zeros((b0s, 3))] + [dirs] * len(bvalues))
    tensors = tissue_tensors(shape)
    s0_map = np.where(np.trace(tensors, axis1=-2, axis2=-1) > 0, s0, 0.0)
    g_d_g = np.einsum("vi,xyzij,vj->xyzv", bvecs, tensors, bvecs)
    signal = s0_map[..., None] * np.exp(-bvals * g_d_g)
    if noise > 0:
        rng = np.random.default_rng(seed)
        sigma = noise * s0
        signal = np.hypot(signal + rng.normal(0, sigma, signal.shape), rng.normal(0, sigma, signal.shape))
    if np.dtype(dtype).kind in "iu":
        signal = np.rint(signal)
    ijk_to_ras = np.diag([-2.0, 2.0, 2.0, 1.0])
    ijk_to_ras[:3, 3] = np.array([nx - 1.0, 1.0 - ny, 1.0 - nz])
    return Volume4D(signal.astype(dtype), ijk_to_ras, Gradients(bvals, bvecs, "fsl"))


def tissue_tensors(shape: tuple[int, int, int]) -> np.ndarray:
    """The phantom's diffusion tensors, (x, y, z, 3, 3) in voxel axes; zero outside the brain."""
    nx, ny, nz = shape
    x, y = np.meshgrid(np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), indexing="ij")
    radius = np.hypot(x / 0.9, y / 0.75)
    tensors = np.zeros((nx, ny, 3, 3))
    tensors[radius < 1] = GM_DIFFUSIVITY * np.eye(3)
    tensors[np.hypot((np.abs(x) - 0.2) / 0.15, y / 0.3) < 1] = CSF_DIFFUSIVITY * np.eye(3)
    ring = (radius > 0.55) & (radius < 0.8)
    tangent = np.stack([-y, x, np.zeros_like(x)], axis=-1)
    tangent /= np.linalg.norm(tangent, axis=-1, keepdims=True) + 1e-12
    l1, l2, _ = WM_EIGENVALUES
    wm = l2 * np.eye(3) + (l1 - l2) * np.einsum("xyi,xyj->xyij", tangent, tangent)
    tensors[ring] = wm[ring]
    return np.repeat(tensors[:, :, None], nz, axis=2)
