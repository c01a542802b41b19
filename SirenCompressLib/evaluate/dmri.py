"""Clinical fidelity of a decoded dMRI image: how much DTI (FA, MD, principal direction) and spherical-harmonic
(RISH0, RISH2) maps change per tissue, beside the changes that MP-PCA denoising, Gaussian smoothing and
JPEG 2000 at the same size make to the same original (the paper's Table 1).

Definitions (also in the README, "dMRI fidelity"):
- Brain mask: dipy's `median_otsu` (its defaults: median radius 4, 4 passes) on the mean b=0 image, holes
  filled in each slice (a head coil's darker centre must not cut the ventricles out), or a given mask.
- Tissues: a given label image (1 = CSF, 2 = GM, 3 = WM, as FSL FAST's `_seg`; other values ignored), or,
  from the original's DTI fit inside the brain mask: CSF where MD > 2.0·10⁻³ mm²/s, else WM where FA > 0.3,
  else GM; voxels with MD < 10⁻⁴ mm²/s (no measurable diffusion: background, failed fits) in none. The same
  masks score every row.
- DTI: dipy's weighted least-squares tensor fit on the b=0 volumes (b < 50 s/mm²) and the shell within
  `tolerance` of `shell` (default b = 1000 ± 100), gradient directions in voxel axes.
- SH: real symmetric spherical harmonics of order 4 (dipy's descoteaux07 basis, orthonormal), least-squares
  fit to the raw signal of one shell (the highest by default; the paper's choice, as MRtrix3 `amp2sh`);
  RISH_l = Σ_m c_lm² over the coefficients of order l.
- Relative error per voxel, in %: 100·(x_other − x_orig) / x_orig, signed (as the paper's tables); voxels
  where |x_orig| ≤ 10⁻³ × the 99th percentile of |x_orig| in the brain (10⁻⁶ × for RISH, squares of
  amplitudes) are left out: no division by ~0 (FA and RISH2 of isotropic voxels, background).
  Per tissue: mean ± std of the signed error, and the mean absolute error.
- Angular error: the angle between the principal eigenvectors of the two tensor fits, sign-invariant
  (0–90°), in degrees; statistics over WM.
- References, each computed from the original: MP-PCA denoising (dipy `mppca` on all volumes, patch radius 2,
  the radius along z cut to fit the number of slices and the in-plane radius raised until a patch has more
  voxels than there are volumes); Gaussian smoothing, FWHM 1.5 voxels (σ = FWHM / 2.3548), 2D in each slice
  and volume; JPEG 2000 (tiled layout, OpenJPEG) at the archive's size, on the data rounded to int16 as the
  rate–distortion benchmark does.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, SirenCompressError
from ..volume import Volume4D

METRICS = ("MD", "FA", "RISH0", "RISH2")
TISSUES = ("WM", "GM", "CSF")
LABELS = {"CSF": 1, "GM": 2, "WM": 3}
B0_MAX = 50.0  # s/mm²: volumes below this are b=0
WM_MIN_FA = 0.3
CSF_MIN_MD = 2.0e-3  # mm²/s
TISSUE_MIN_MD = 1e-4  # mm²/s: below, no tissue (background, failed fits)
SMOOTHING_FWHM = 1.5  # voxels
SH_ORDER = 4
SH_MIN_DIRECTIONS = 15  # coefficients of a symmetric order-4 basis
EXCLUDE_BELOW = 1e-3  # × the 99th percentile of |x_orig| in the brain; squared for RISH


@dataclass
class Shells:
    """Which volumes each fit uses (indices into the volume axis)."""

    b0: list[int]
    dti: list[int]
    sh: list[int]
    dti_b: float  # mean b-value of the chosen shells, s/mm²
    sh_b: float


@dataclass
class Maps:
    """Scalar maps of one image (x, y, z) and the principal eigenvector (x, y, z, 3), in voxel axes."""

    values: dict[str, np.ndarray]  # METRICS → map
    direction: np.ndarray


@dataclass
class Stat:
    """Statistics of one error over one tissue's voxels."""

    mean: float  # % (relative errors) or degrees (angles); NaN when no voxel counts
    std: float
    mean_abs: float
    voxels: int


@dataclass
class Row:
    """One compared image: its errors per metric and tissue, the WM angular error and the error maps."""

    name: str
    kind: str  # "compression" or "pre-processing"
    errors: dict[str, dict[str, Stat]]  # metric → tissue → relative error (%)
    angle: Stat  # principal direction, WM, degrees
    maps: dict[str, np.ndarray] = field(repr=False)  # metric → signed relative error (%); "angle" → degrees
    note: str = ""


@dataclass
class Fidelity:
    """The result of `dmri_fidelity`: one `Row` per compared image, the tissue labels and the settings used."""

    rows: list[Row]  # the decoded image first, then the references
    tissues: np.ndarray  # labels (x, y, z): 0 outside the brain, LABELS otherwise
    ijk_to_ras: np.ndarray
    settings: dict
    original: Maps = field(repr=False)  # the original's maps, which every row is scored against

    def to_json(self) -> dict:
        """Everything but the maps, as JSON values.

        Returns
        -------
        dict
            `{"settings", "tissue_voxels", "rows"}`: the settings, the voxel count of each tissue, and per row
            its name, kind, note, WM angular error (degrees) and relative errors (%) per metric and tissue;
            NaN as None.
        """
        def stat(s: Stat) -> dict:
            return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in vars(s).items()}

        voxels = {t: int((self.tissues == LABELS[t]).sum()) for t in TISSUES}
        return {"settings": self.settings, "tissue_voxels": voxels,
                "rows": [{"name": r.name, "kind": r.kind, "note": r.note, "angle_wm_degrees": stat(r.angle),
                          "relative_error_percent": {m: {t: stat(s) for t, s in by.items()}
                                                     for m, by in r.errors.items()}} for r in self.rows]}


def dmri_fidelity(original: Volume4D, decoded: Volume4D, mask: np.ndarray | None = None,
                  labels: np.ndarray | None = None, shell: float = 1000.0, tolerance: float = 100.0,
                  sh_shell: float | None = None, references: bool = True, archive_bytes: int | None = None,
                  name: str = "decoded") -> Fidelity:
    """DTI and RISH errors of `decoded` against `original` per tissue, and of the references when asked.

    Follows the comparison of the SIREN dMRI compression paper's Table 1 (Mancini, Jones, Palombo); the
    definitions (mask, tissues, fits, error statistics, references) are in the module docstring.

    Parameters
    ----------
    original : Volume4D
        The uncompressed image (x, y, z, volumes); it must carry gradients.
    decoded : Volume4D
        The image to score, the same shape (its own gradients are not used).
    mask : numpy.ndarray or None
        Brain mask (x, y, z), non-zero inside; None: `brain_mask` of the original.
    labels : numpy.ndarray or None
        Tissue labels (x, y, z): 1 CSF, 2 GM, 3 WM (FSL FAST's `_seg`), other values ignored; None:
        `tissue_labels` of the original's fit.
    shell : float
        The b-value of the DTI shell, s/mm².
    tolerance : float
        How far a volume's b-value may be from a shell's and still belong to it, s/mm².
    sh_shell : float or None
        The b-value of the spherical-harmonics shell, s/mm²; None: the highest.
    references : bool
        Also score MP-PCA denoising, Gaussian smoothing and (with `archive_bytes`) JPEG 2000 of the original.
    archive_bytes : int or None
        The archive's size in bytes, which the JPEG 2000 reference must match; None leaves that row out.
    name : str
        The name of the decoded image's row.

    Returns
    -------
    Fidelity
        The decoded image's row first, then the references.

    Raises
    ------
    InputError
        When the original has no gradients, the shapes differ, the mask is empty, a mask or label image
        has another shape, or the shells are missing or have too few directions (see `select_shells`).
    SirenCompressError
        When dipy (or, for the JPEG 2000 reference, imagecodecs) is not installed.
    """
    _require_dipy()
    if original.gradients is None:
        raise InputError("the original has no diffusion gradients (b-values and directions); "
                         "give a DWI NRRD or a NIfTI with .bval/.bvec beside it")
    if decoded.shape != original.shape:
        raise InputError(f"shapes differ: original {'×'.join(map(str, original.shape))}, "
                         f"decoded {'×'.join(map(str, decoded.shape))}")
    g = original.gradients
    shells = select_shells(g.bvals, shell, tolerance, sh_shell)
    directions = g.directions_voxel(original.ijk_to_ras)
    signal = physical(original)
    mask_source = "given" if mask is not None else "median_otsu on the mean b=0 image, holes filled"
    mask = _check_map(mask, original.shape[:3], "mask") != 0 if mask is not None \
        else brain_mask(signal[..., shells.b0])
    if not mask.any():
        raise InputError("the brain mask is empty")
    fit = _Fitter(g.bvals, directions, shells, mask)
    reference = fit(signal)
    if labels is not None:
        tissues = np.where(mask, np.rint(_check_map(labels, original.shape[:3], "label image")), 0).astype(int)
        tissues[~np.isin(tissues, list(LABELS.values()))] = 0
    else:
        tissues = tissue_labels(reference, mask)
    others = [(name, "compression", physical(decoded), "")]
    notes = []
    if references:
        patch = mppca_patch_radius(original.shape)
        others += [("MP-PCA", "pre-processing", mppca(signal, mask, patch), f"patch radius {patch}"),
                   (f"Gaussian smoothing FWHM {SMOOTHING_FWHM:g}", "pre-processing", smoothed(signal),
                    "in-plane (2D)")]
        if archive_bytes:
            coded, nbytes = jpeg2000_same_size(original, archive_bytes)
            others.append(("JPEG 2000 same size", "compression", coded,
                           f"tiled, {nbytes:,} bytes vs {archive_bytes:,}"))
        else:
            notes.append("JPEG 2000 left out: the archive's size is unknown (give the .sirz as DECODED)")
    rows = [compare_maps(label, kind, reference, fit(data), tissues, mask, note)
            for label, kind, data, note in others]
    raw16 = int(np.prod(original.shape)) * 2
    settings = {"shape": list(original.shape), "dti_shell_b": shells.dti_b, "sh_shell_b": shells.sh_b,
                "b_tolerance": tolerance, "b0_volumes": len(shells.b0), "dti_volumes": len(shells.dti),
                "sh_volumes": len(shells.sh), "sh_order": SH_ORDER, "mask": mask_source,
                "tissues": "label image (1 CSF, 2 GM, 3 WM)" if labels is not None else
                f"CSF: MD > {CSF_MIN_MD:g} mm²/s; WM: FA > {WM_MIN_FA:g}; GM: the rest of the brain mask; "
                f"none where MD < {TISSUE_MIN_MD:g} mm²/s",
                "archive_bytes": archive_bytes, "ratio_raw16": raw16 / archive_bytes if archive_bytes else None,
                "notes": notes}
    return Fidelity(rows, tissues.astype(np.uint8), original.ijk_to_ras, settings, reference)


def select_shells(bvals: np.ndarray, shell: float, tolerance: float, sh_shell: float | None = None) -> Shells:
    """The volumes of each fit: b=0, the DTI shell and the spherical-harmonics shell.

    Parameters
    ----------
    bvals : numpy.ndarray
        (volumes,) b-values, s/mm²; below `B0_MAX` (50) counts as b=0.
    shell : float
        The DTI shell's b-value, s/mm².
    tolerance : float
        The largest |b − shell| of a volume in a shell, s/mm².
    sh_shell : float or None
        The SH shell's b-value, s/mm²; None: the highest b-value present.

    Returns
    -------
    Shells
        The indices of each set and the mean b-value of each shell.

    Raises
    ------
    InputError
        When there is no b=0 volume, a shell has no volume, the DTI shell has fewer than 6 directions or
        the SH shell fewer than 15 (the coefficients of order 4).
    """
    bvals = np.asarray(bvals, dtype=float)
    b0 = np.flatnonzero(bvals < B0_MAX)
    present = ", ".join(f"{b:g}" for b in sorted({round(b, -1) for b in bvals}))
    if b0.size == 0:
        raise InputError(f"no b=0 volume (b < {B0_MAX:g} s/mm²); b-values present: {present}")

    def pick(b: float, what: str) -> np.ndarray:
        chosen = np.flatnonzero((np.abs(bvals - b) <= tolerance) & (bvals >= B0_MAX))
        if chosen.size == 0:
            raise InputError(f"no b ≈ {b:g} shell (± {tolerance:g} s/mm²) for {what}; b-values present: {present}")
        return chosen

    dti = pick(shell, "DTI")
    if dti.size < 6:
        raise InputError(f"the b ≈ {shell:g} shell has {dti.size} directions; a tensor fit needs at least 6")
    sh = pick(float(bvals.max()) if sh_shell is None else sh_shell, "spherical harmonics")
    if sh.size < SH_MIN_DIRECTIONS:
        raise InputError(f"the b ≈ {bvals[sh].mean():g} shell has {sh.size} directions; spherical harmonics of "
                         f"order {SH_ORDER} need at least {SH_MIN_DIRECTIONS}")
    return Shells(b0.tolist(), dti.tolist(), sh.tolist(), float(bvals[dti].mean()), float(bvals[sh].mean()))


def physical(volume: Volume4D) -> np.ndarray:
    """The stored values with the volume's scaling applied.

    Parameters
    ----------
    volume : Volume4D
        The data and its (slope, intercept) scaling.

    Returns
    -------
    numpy.ndarray
        float64, the shape of the data: data × slope + intercept.
    """
    slope, intercept = volume.scaling
    return volume.data.astype(np.float64) * slope + intercept


def brain_mask(b0: np.ndarray) -> np.ndarray:
    """A brain mask from the b=0 volumes.

    dipy's `median_otsu` (median filter radius 4, 4 passes, then Otsu's threshold) on their mean, holes
    filled in each axial slice (so that a head coil's darker centre does not cut the ventricles out).

    Parameters
    ----------
    b0 : numpy.ndarray
        (x, y, z, n) the b=0 volumes.

    Returns
    -------
    numpy.ndarray
        (x, y, z) bool.

    Raises
    ------
    SirenCompressError
        When dipy is not installed.
    """
    from scipy.ndimage import binary_fill_holes

    with warnings.catch_warnings():  # scikit-image takes a 3-slice image for an RGB one and says so
        warnings.simplefilter("ignore", UserWarning)
        _, mask = _require_dipy().median_otsu(b0.mean(axis=-1))
    return np.stack([binary_fill_holes(mask[:, :, z]) for z in range(mask.shape[2])], axis=-1)


class _Fitter:
    """DTI on the b=0 + DTI-shell volumes and order-4 SH on the SH shell, inside the mask."""

    def __init__(self, bvals: np.ndarray, directions: np.ndarray, shells: Shells, mask: np.ndarray) -> None:
        dipy = _require_dipy()
        self.shells, self.mask = shells, mask
        dti = shells.b0 + shells.dti
        table = dipy.gradient_table(bvals[dti], bvecs=directions[dti], b0_threshold=B0_MAX)
        self.tensor = dipy.TensorModel(table, fit_method="WLS")
        x, y, z = directions[shells.sh].T
        theta, phi = np.arccos(np.clip(z, -1, 1)), np.arctan2(y, x)
        basis, _, self.order = dipy.real_sh_descoteaux(SH_ORDER, theta, phi, legacy=False)
        self.pinv = np.linalg.pinv(basis)

    def __call__(self, signal: np.ndarray) -> Maps:
        fit = self.tensor.fit(signal[..., self.shells.b0 + self.shells.dti], mask=self.mask)
        coefficients = signal[..., self.shells.sh] @ self.pinv.T
        values = {"MD": fit.md, "FA": fit.fa}
        for order in (0, 2):
            values[f"RISH{order}"] = np.where(self.mask, (coefficients[..., self.order == order] ** 2).sum(-1), 0.0)
        return Maps({k: np.nan_to_num(v) for k, v in values.items()}, fit.evecs[..., 0])


def tissue_labels(maps: Maps, mask: np.ndarray) -> np.ndarray:
    """Tissue labels from DTI maps: CSF where MD > 2.0·10⁻³ mm²/s, else WM where FA > 0.3, else GM.

    Parameters
    ----------
    maps : Maps
        The maps of the original (its "MD" in mm²/s and "FA" are read).
    mask : numpy.ndarray
        (x, y, z) bool brain mask.

    Returns
    -------
    numpy.ndarray
        (x, y, z) int: `LABELS` (1 CSF, 2 GM, 3 WM); 0 outside the mask and where MD < 10⁻⁴ mm²/s.
    """
    md, fa = maps.values["MD"], maps.values["FA"]
    labels = np.where(fa > WM_MIN_FA, LABELS["WM"], LABELS["GM"])
    labels[md > CSF_MIN_MD] = LABELS["CSF"]
    return np.where(mask & (md >= TISSUE_MIN_MD), labels, 0)


def compare_maps(name: str, kind: str, reference: Maps, other: Maps, tissues: np.ndarray, mask: np.ndarray,
                 note: str = "") -> Row:
    """Relative errors per metric and tissue, and the WM angular error, of `other` against `reference`.

    Parameters
    ----------
    name : str
        The row's name.
    kind : str
        "compression" or "pre-processing".
    reference : Maps
        The original's maps.
    other : Maps
        The maps of the image scored.
    tissues : numpy.ndarray
        (x, y, z) int labels, `LABELS`.
    mask : numpy.ndarray
        (x, y, z) bool brain mask.
    note : str
        Shown beside the row in the report.

    Returns
    -------
    Row
        Per metric, the signed relative error 100·(other − reference) / reference in % per voxel (0 where
        left out: outside the mask and where |reference| is at most `EXCLUDE_BELOW` × its 99th percentile
        in the mask, squared for RISH) and its statistics per tissue; the angle between the principal
        eigenvectors (0–90°, sign-invariant) per voxel and over WM.
    """
    errors, maps = {}, {}
    for metric in METRICS:
        x, y = reference.values[metric], other.values[metric]
        floor = EXCLUDE_BELOW ** (2 if metric.startswith("RISH") else 1) * np.percentile(np.abs(x[mask]), 99)
        valid = mask & (np.abs(x) > floor)
        relative = np.zeros_like(x)
        relative[valid] = 100.0 * (y[valid] - x[valid]) / x[valid]
        maps[metric] = relative
        errors[metric] = {t: _stat(relative[valid & (tissues == LABELS[t])]) for t in TISSUES}
    cosine = np.abs(np.sum(reference.direction * other.direction, axis=-1))
    maps["angle"] = np.where(mask, np.degrees(np.arccos(np.clip(cosine, 0.0, 1.0))), 0.0)
    return Row(name, kind, errors, _stat(maps["angle"][tissues == LABELS["WM"]]), maps, note)


def mppca_patch_radius(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The MP-PCA patch radius for an image.

    Radius 2 (5×5×5 patches), cut along z to fit the slices, the in-plane radius raised (while the patch
    fits in the image) until a patch has more voxels than there are volumes.

    Parameters
    ----------
    shape : tuple of int
        The image's (x, y, z, volumes).

    Returns
    -------
    tuple of int
        The radius along (x, y, z), voxels.
    """
    nx, ny, nz, nv = shape
    rz = min(2, (nz - 1) // 2)
    r = 2
    while (2 * r + 1) ** 2 * (2 * rz + 1) <= nv and 2 * r + 3 <= min(nx, ny):
        r += 1
    return r, r, rz


def mppca(signal: np.ndarray, mask: np.ndarray, patch_radius: tuple[int, int, int]) -> np.ndarray:
    """dipy's MP-PCA denoising of all volumes inside the mask.

    Marchenko–Pastur PCA on local patches (Veraart et al. 2016, NeuroImage 142:394), dipy's
    `denoise.localpca.mppca`, with one BLAS thread.

    Parameters
    ----------
    signal : numpy.ndarray
        (x, y, z, volumes) float.
    mask : numpy.ndarray
        (x, y, z) bool; voxels outside are not denoised.
    patch_radius : tuple of int
        The patch radius along (x, y, z), voxels (see `mppca_patch_radius`).

    Returns
    -------
    numpy.ndarray
        The denoised signal, the shape of `signal`; zero outside the mask, NaN replaced by 0.

    Raises
    ------
    SirenCompressError
        When dipy or threadpoolctl is not installed.
    """
    dipy = _require_dipy()
    # One BLAS thread: the patches' eigen-decompositions are small (~100×100), and threads competing for
    # busy cores made them 30 times slower in our measurements.
    with warnings.catch_warnings(), dipy.threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 outside the mask and in patches without noise
        denoised = dipy.mppca(signal, mask=mask, patch_radius=np.array(patch_radius),
                                         suppress_warning=True)
    return np.nan_to_num(denoised)


def smoothed(signal: np.ndarray, fwhm: float = SMOOTHING_FWHM) -> np.ndarray:
    """Gaussian smoothing of each slice and volume, in-plane (2D), edges repeated.

    Parameters
    ----------
    signal : numpy.ndarray
        (x, y, z, volumes).
    fwhm : float
        Full width at half maximum, voxels (σ = FWHM / 2.3548).

    Returns
    -------
    numpy.ndarray
        The smoothed signal, the shape of `signal`.
    """
    from scipy.ndimage import gaussian_filter

    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    return gaussian_filter(signal, sigma=(sigma, sigma, 0, 0), mode="nearest")


def jpeg2000_same_size(original: Volume4D, target_bytes: int) -> tuple[np.ndarray, int]:
    """The JPEG 2000 reference: the original coded to about the archive's size.

    The original with integer voxels as the rate–distortion benchmark codes it (`rd.integer_volume`: float
    data rounded to int16), coded with OpenJPEG in the tiled layout to about `target_bytes`
    (`classical.jpeg2000_at_size`).

    Parameters
    ----------
    original : Volume4D
        The image (x, y, z, volumes).
    target_bytes : int
        The size to match, bytes.

    Returns
    -------
    decoded : numpy.ndarray
        (x, y, z, volumes) float64, the decoded values with the original's scaling applied.
    nbytes : int
        The coded size, bytes.

    Raises
    ------
    SirenCompressError
        When imagecodecs is not installed.
    """
    from .classical import jpeg2000_at_size
    from .rd import integer_volume

    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        raise SirenCompressError("the JPEG 2000 reference needs imagecodecs: pip install 'sirencompress[dmri]' "
                                 "(or --no-references)") from None
    integer, _ = integer_volume(original)
    coded = jpeg2000_at_size(integer.data, target_bytes, "tiled")
    return physical(Volume4D(coded.decoded, scaling=original.scaling)), coded.nbytes


def _stat(values: np.ndarray) -> Stat:
    if values.size == 0:
        return Stat(math.nan, math.nan, math.nan, 0)
    return Stat(float(values.mean()), float(values.std()), float(np.abs(values).mean()), int(values.size))


def _check_map(array: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.shape != tuple(shape):
        raise InputError(f"the {what} is {'×'.join(map(str, array.shape))}, the image {'×'.join(map(str, shape))}")
    return array


class _Dipy:
    """The few dipy functions used (and threadpoolctl's limit), imported on first use."""

    def __init__(self) -> None:
        from dipy.core.gradients import gradient_table
        from dipy.denoise.localpca import mppca
        from dipy.reconst.dti import TensorModel
        from dipy.reconst.shm import real_sh_descoteaux
        from dipy.segment.mask import median_otsu
        from threadpoolctl import threadpool_limits

        self.gradient_table, self.mppca, self.TensorModel = gradient_table, mppca, TensorModel
        self.real_sh_descoteaux, self.median_otsu = real_sh_descoteaux, median_otsu
        self.threadpool_limits = threadpool_limits


@functools.cache
def _require_dipy() -> _Dipy:
    try:
        return _Dipy()
    except ImportError:
        raise SirenCompressError("the dMRI evaluation needs dipy and threadpoolctl: "
                                 "pip install 'sirencompress[dmri]'") from None
