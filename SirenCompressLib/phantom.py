"""Synthetic diffusion MRI phantoms for tests and benchmarks (diffusion tensor model, known ground truth).

`dwi_phantom`: an elliptical "brain" of grey matter (isotropic), a ring of white matter whose fibres run
around the ring (anisotropic), and CSF "ventricles" (fast isotropic diffusion), on a zero background.
`brain_phantom`: a whole brain on the MNI152 tissue maps, by default on UK Biobank's grid (104×104×72 voxels
of 2 mm, 105 volumes), with its noise-free signal.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .volume import Gradients, Volume4D

GM_DIFFUSIVITY = 0.8e-3  # mm²/s
CSF_DIFFUSIVITY = 3.0e-3
WM_EIGENVALUES = (1.7e-3, 0.3e-3, 0.3e-3)


def hemisphere_directions(n: int) -> np.ndarray:
    """Unit vectors spread evenly over the upper half sphere (a Fibonacci lattice: z evenly spaced in (0, 1],
    azimuth stepped by the golden angle).

    Parameters
    ----------
    n : int
        The number of directions.

    Returns
    -------
    numpy.ndarray
        (n, 3) float64 unit vectors, z ≥ 0.
    """
    i = np.arange(n) + 0.5
    z = 1.0 - i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def dwi_phantom(shape: tuple[int, int, int] = (32, 32, 4), directions: int = 12,
                bvalues: tuple[float, ...] = (1000.0,), b0s: int = 1, s0: float = 1000.0,
                noise: float = 0.0, dtype: str = "int16", seed: int = 0) -> Volume4D:
    """A small DWI phantom: the diffusion tensor model on `tissue_tensors`, S = S0 · exp(−b gᵀDg).

    Voxels 2 mm isotropic, LAS orientation (IJK→RAS with a negative determinant), so that the FSL b-vectors
    are the gradient directions in voxel axes, the frame of `tissue_tensors`. The b=0 volumes come first,
    then each shell with the same `hemisphere_directions(directions)`.

    Parameters
    ----------
    shape : tuple of int
        Voxels (x, y, z).
    directions : int
        Gradient directions per non-zero b-value.
    bvalues : tuple of float
        The non-zero b-values (shells), s/mm².
    b0s : int
        The number of b=0 volumes.
    s0 : float
        The b=0 signal inside the brain (0 outside).
    noise : float
        Rician noise: σ of the real and imaginary Gaussian noise relative to `s0`; 0 gives the noise-free
        phantom (with the same `seed`, the noisy and noise-free phantoms share everything else).
    dtype : str
        The data type; integer types are rounded (not clipped).
    seed : int
        Seeds the noise.

    Returns
    -------
    Volume4D
        (x, y, z, b0s + directions × len(bvalues)), with FSL-convention gradients.
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
    """The diffusion tensors of `dwi_phantom`, the same in every slice.

    An ellipse of grey matter (isotropic, `GM_DIFFUSIVITY`), two CSF "ventricles" (isotropic,
    `CSF_DIFFUSIVITY`) and a ring of white matter whose fibres run around the ring (`WM_EIGENVALUES`).

    Parameters
    ----------
    shape : tuple of int
        Voxels (x, y, z).

    Returns
    -------
    numpy.ndarray
        (x, y, z, 3, 3) float64 tensors in voxel axes, mm²/s; zero outside the brain.
    """
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


# The brain phantom: tissue fractions of the MNI152 2009a template, b=0 contrast PD·exp(-TE/T2) at TE 92 ms
# (proton density and T2 per tissue: WM 0.7, 70 ms; GM 0.8, 100 ms; CSF 1.0, 2000 ms), relative to WM.
MNI_FILES = {"t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
             "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
             "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"}
FIELD_OF_VIEW = (208.0, 208.0, 144.0)  # mm, a UK Biobank diffusion field of view
FOV_CENTRE = (0.0, -18.0, 12.0)  # MNI mm: the cerebrum whole, the lower brainstem and cerebellum cut
GM_EIGENVALUES = (0.95e-3, 0.75e-3, 0.75e-3)  # mm²/s, mean 0.82e-3, FA 0.14
B0_CONTRAST = {"wm": 1.0, "gm": 0.8 * np.exp(-92 / 100) / (0.7 * np.exp(-92 / 70)),
               "csf": np.exp(-92 / 2000) / (0.7 * np.exp(-92 / 70))}
FIBRE_SMOOTHNESS = 8.0  # mm, standard deviation of the Gaussian that smooths the fibre direction fields


@dataclass
class BrainPhantom:
    """A noisy DWI phantom, its noise-free signal and the noise level."""

    volume: Volume4D  # noisy, in the requested dtype
    clean: np.ndarray  # (x, y, z, volumes) float32, the signal before noise and rounding
    sigma: float  # Gaussian σ of the real and imaginary noise, in voxel units


def brain_phantom(shape: tuple[int, int, int] = (104, 104, 72), bvalues: tuple[float, ...] = (1000.0, 2000.0),
                  directions: int = 50, b0s: int = 5, s0: float = 1000.0, snr: float = 60.0,
                  dtype: str = "int16", seed: int = 0) -> BrainPhantom:
    """A whole-brain DWI phantom on real anatomy: the MNI152 tissue maps that nilearn ships.

    The field of view is fixed (208×208×144 mm, the default shape gives 2 mm voxels, UK Biobank's grid);
    other shapes sample the same brain with other voxel sizes. Per voxel, the signal is the sum over
    tissues of fraction × b=0 contrast × attenuation: white matter two crossing tensors (eigenvalues
    `WM_EIGENVALUES`, directions and weights from smooth random fields drawn with `seed`), grey matter a
    weakly anisotropic tensor (`GM_EIGENVALUES`), CSF free water (`CSF_DIFFUSIVITY`); times a smooth
    receive-coil bias. Rician noise: the magnitude of the signal plus complex Gaussian noise of σ =
    `s0` / `snr` per channel (Gudbjartsson & Patz 1995, Magn Reson Med 34:910). b=0 volumes are spread
    evenly over the series, the shells follow in order; each shell takes every n-th of
    `hemisphere_directions(directions × shells)`, so shells do not share directions. LAS orientation
    (IJK→RAS with a negative determinant): the FSL b-vectors are the gradient directions in voxel axes.

    Parameters
    ----------
    shape : tuple of int
        Voxels (x, y, z) over the field of view.
    bvalues : tuple of float
        The non-zero b-values (shells), s/mm².
    directions : int
        Gradient directions per shell.
    b0s : int
        The number of b=0 volumes.
    s0 : float
        The b=0 signal of pure white matter (CSF is 5.1 times brighter, grey matter 1.7 times).
    snr : float
        `s0` / σ. The default 60 gives σ ≈ 0.35 % of the intensity range, as on the real sample.
    dtype : str
        The dtype of the noisy volume; integer types are rounded and clipped to the type's range.
    seed : int
        Seeds the fibre fields and the noise; the clean signal depends only on `seed` and the sizes.

    Returns
    -------
    BrainPhantom
        The noisy `Volume4D` with gradients, its noise-free signal and σ.

    Raises
    ------
    InputError
        When nilearn (the source of the maps) is not installed, or a size, `directions` or `snr` is not
        positive.
    """
    if min(shape) < 1 or directions < 1 or b0s < 0 or snr <= 0:
        raise InputError("the phantom needs positive sizes, directions and SNR")
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    spacing = np.array(FIELD_OF_VIEW) / np.array(shape)
    ijk_to_ras = np.diag([-spacing[0], spacing[1], spacing[2], 1.0])
    ijk_to_ras[:3, 3] = np.array(FOV_CENTRE) - ijk_to_ras[:3, :3] @ ((np.array(shape) - 1) / 2)
    gm, wm, csf = _tissue_fractions(shape, ijk_to_ras)
    inside = (gm + wm + csf) > 1e-3
    bvals, bvecs = _protocol(bvalues, directions, b0s)

    def field(components: int) -> np.ndarray:
        noise = rng.standard_normal((components, *shape)).astype(np.float32)
        smooth = np.stack([ndimage.gaussian_filter(n, FIBRE_SMOOTHNESS / spacing) for n in noise])
        return smooth[:, inside].T / smooth.std()

    fibre1, fibre2 = _unit(field(3)), _unit(field(3))
    weight1 = 0.75 + 0.25 * np.tanh(field(1)[:, 0])

    def tensor(direction: np.ndarray, eigenvalues: tuple[float, float, float]) -> np.ndarray:
        """exp(-b gᵀDg) of an axially symmetric tensor for every voxel inside and volume, (voxels, volumes)."""
        axial, radial = eigenvalues[0], eigenvalues[1]
        cosines = (direction @ bvecs.T.astype(np.float32)) ** 2
        return np.exp(-bvals.astype(np.float32) * (radial + (axial - radial) * cosines))

    white = weight1[:, None] * tensor(fibre1, WM_EIGENVALUES) + (1 - weight1[:, None]) * tensor(fibre2, WM_EIGENVALUES)
    signal = (wm[inside, None] * B0_CONTRAST["wm"]) * white
    signal += (gm[inside, None] * B0_CONTRAST["gm"]) * tensor(fibre1, GM_EIGENVALUES)
    signal += (csf[inside, None] * B0_CONTRAST["csf"]) * np.exp(-bvals * CSF_DIFFUSIVITY).astype(np.float32)
    signal *= (s0 * _coil_bias(shape)[inside])[:, None]
    clean = np.zeros((*shape, bvals.size), np.float32)
    clean[inside] = signal
    del signal, white

    sigma = s0 / snr
    noisy = np.empty(clean.shape, np.dtype(dtype))
    limits = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    for i in range(shape[0]):  # a sagittal slab at a time: the noise of the whole series would need 2 × its size
        real = clean[i] + sigma * rng.standard_normal(clean.shape[1:], np.float32)
        magnitude = np.hypot(real, sigma * rng.standard_normal(clean.shape[1:], np.float32))
        noisy[i] = magnitude if limits is None else np.clip(np.rint(magnitude), limits.min, limits.max)
    return BrainPhantom(Volume4D(noisy, ijk_to_ras, Gradients(bvals, bvecs, "fsl")), clean, sigma)


def _protocol(bvalues: tuple[float, ...], directions: int, b0s: int) -> tuple[np.ndarray, np.ndarray]:
    """b-values and unit directions: b=0 spread evenly, then the shells in order, (V,) and (V, 3)."""
    shells = len(bvalues)
    spread = hemisphere_directions(directions * shells)
    weighted_b = np.repeat(np.asarray(bvalues, float), directions)
    weighted_g = np.concatenate([spread[k::shells] for k in range(shells)])
    count = b0s + weighted_b.size
    zero = np.zeros(count, bool)
    zero[np.linspace(0, count - 1, b0s).round().astype(int)] = True
    bvals, bvecs = np.zeros(count), np.zeros((count, 3))
    bvals[~zero], bvecs[~zero] = weighted_b, weighted_g
    return bvals, bvecs


def _tissue_fractions(shape: tuple[int, int, int], ijk_to_ras: np.ndarray) -> tuple[np.ndarray, ...]:
    """Grey matter, white matter and CSF fractions on the grid, each (x, y, z) float32 in [0, 1].

    The 1 mm MNI152 2009a maps (Fonov et al. 2011, NeuroImage 54:313) interpolated linearly at ≤ 1 mm
    steps inside each target voxel and averaged (the partial volume of a box-shaped voxel); both grids are
    axis-aligned, so this is one weight matrix per axis. CSF is what is left of the brain mask (T1 template
    > 0, the ventricles included).
    """
    import nibabel as nib

    folder = _nilearn_data()
    images = {name: nib.load(folder / file) for name, file in MNI_FILES.items()}
    to_template = np.linalg.inv(images["t1"].affine) @ ijk_to_ras
    weights = [_axis_weights(n, to_template[a, a], to_template[a, 3], size)
               for a, (n, size) in enumerate(zip(shape, images["t1"].shape))]

    def resampled(template: np.ndarray) -> np.ndarray:
        return np.einsum("ia,jb,kc,abc->ijk", *weights, template, optimize=True).astype(np.float32)

    gm, wm = (resampled(np.asarray(images[name].dataobj) / np.float32(255)) for name in ("gm", "wm"))
    brain = resampled(np.asarray(images["t1"].dataobj) > 0)
    return np.clip(gm, 0, 1), np.clip(wm, 0, 1), np.clip(brain - gm - wm, 0, 1)


def _axis_weights(n: int, scale: float, shift: float, size: int) -> np.ndarray:
    """Along one axis, (n, size): the mean of linear interpolations at ⌈|scale|⌉ evenly spaced points in
    each of `n` target voxels, target index i at template index scale · i + shift."""
    steps = int(np.ceil(abs(scale)))
    points = scale * (np.arange(n)[:, None] + (np.arange(steps) + 0.5) / steps - 0.5) + shift
    return np.maximum(0, 1 - np.abs(points[..., None] - np.arange(size))).mean(axis=1)


def _nilearn_data() -> Path:
    """The folder of nilearn's bundled MNI152 maps (only read; nilearn is not imported)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the brain phantom needs the MNI152 maps of nilearn: pip install nilearn")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    if not (folder / MNI_FILES["wm"]).is_file():
        raise InputError(f"nilearn has no MNI152 maps at {folder}")
    return folder


def _coil_bias(shape: tuple[int, int, int]) -> np.ndarray:
    """A receive-coil bias: 1 at the centre of the field of view, 1.3 at the corners of a slice, (x, y, z)."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return 1 + 0.15 * (x**2 + y**2) - 0.05 * z**2


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / (np.linalg.norm(vectors, axis=-1, keepdims=True) + 1e-12)


PHANTOMS = {"small": ((64, 64, 4), 50.0), "full": ((104, 104, 72), 60.0)}  # name: default shape and SNR


def named_phantom(name: str, shape: tuple[int, int, int] | None = None, snr: float | None = None,
                  seed: int = 0) -> tuple[Volume4D, np.ndarray, str]:
    """A phantom of `sirencompress sample --phantom` and `bench --phantom`, int16.

    Parameters
    ----------
    name : {"small", "full"}
        "small": `dwi_phantom`, 64×64×4 × 61 volumes (30 directions at b = 1000 and 2000 s/mm²);
        "full": `brain_phantom`, 104×104×72 × 105 volumes.
    shape : tuple of int or None
        Voxels (x, y, z) instead of the phantom's default.
    snr : float or None
        b=0 signal / σ instead of the default (50 for "small": σ 2 % of the signal; 60 for "full").
    seed : int
        The random seed.

    Returns
    -------
    volume : Volume4D
        The noisy phantom, int16, with gradients.
    clean : numpy.ndarray
        The noise-free data, (x, y, z, volumes).
    description : str
        One line naming the phantom, its size, SNR and seed.

    Raises
    ------
    InputError
        For an unknown name, or a size or SNR that is not positive.
    """
    if name not in PHANTOMS:
        raise InputError(f"unknown phantom {name!r}; choose one of {', '.join(PHANTOMS)}")
    shape = shape or PHANTOMS[name][0]
    snr = snr or PHANTOMS[name][1]
    if name == "small":
        if min(shape) < 1 or snr <= 0:
            raise InputError("the phantom needs positive sizes and SNR")
        options = dict(shape=shape, directions=30, bvalues=(1000.0, 2000.0), seed=seed)
        volume, clean = dwi_phantom(noise=1 / snr, **options), dwi_phantom(noise=0.0, **options).data
    else:
        phantom = brain_phantom(shape, snr=snr, seed=seed)
        volume, clean = phantom.volume, phantom.clean
    size = f"{'×'.join(map(str, volume.shape[:3]))} × {volume.shape[3]} volumes"
    return volume, clean, f"{name} DWI phantom {size} (b = 0, 1000, 2000), SNR {snr:g}, seed {seed}, int16"
