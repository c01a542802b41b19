"""Read and write 4D images: NIfTI (.nii, .nii.gz) with FSL .bval/.bvec, and NRRD (.nrrd, .nhdr) DWI.

Every failure is an `InputError` (or `OutputError`) with a one-line message.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_outputs
from .errors import InputError
from .volume import RAS_TO_LPS, FrameIndex, Gradients, Volume4D

NIFTI_SUFFIXES = (".nii.gz", ".nii")
NRRD_SUFFIXES = (".nrrd", ".nhdr")


def image_format(path: str | os.PathLike) -> str:
    """"nifti" or "nrrd", from the file name; `InputError` for anything else."""
    name = Path(path).name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(NRRD_SUFFIXES):
        return "nrrd"
    raise InputError(f"{path}: unsupported file type; use .nii, .nii.gz, .nrrd or .nhdr")


def read_volume(path: str | os.PathLike, bval: str | os.PathLike | None = None,
                bvec: str | os.PathLike | None = None, gradients: bool = True) -> Volume4D:
    """Read a 4D image. For NIfTI, `bval`/`bvec` default to files with the same stem beside it.

    `gradients=False` ignores any gradient information (for comparing images).
    """
    path = Path(path)
    kind = image_format(path)
    _check_readable(path)
    if kind == "nifti":
        volume = _read_nifti(path)
        if gradients:
            volume.gradients = _read_fsl_gradients(path, bval, bvec, volume.shape[3])
    else:
        if bval is not None or bvec is not None:
            raise InputError("--bval/--bvec apply to NIfTI input; NRRD files carry their own gradients")
        volume = _read_nrrd(path, gradients)
    return volume


def write_volume(volume: Volume4D, path: str | os.PathLike, force: bool = False) -> list[Path]:
    """Write `volume` atomically; NIfTI with gradients also writes .bval/.bvec beside it.

    Returns the paths written. Existing files are replaced only with `force`.
    """
    path = Path(path)
    if image_format(path) == "nifti":
        paths = [path]
        if volume.gradients is not None:
            paths += list(fsl_gradient_paths(path))
        with atomic_outputs(paths, force) as temps:
            _write_nifti(volume, temps[0])
            if volume.gradients is not None:
                fsl = volume.gradients.in_convention("fsl", volume.ijk_to_ras)
                np.savetxt(temps[1], fsl.bvals[None, :], fmt="%.6g")
                np.savetxt(temps[2], fsl.bvecs.T, fmt="%.10g")
        return paths
    if path.name.lower().endswith(".nhdr"):
        raise InputError(f"{path}: writing detached .nhdr headers is not supported; use .nrrd")
    with atomic_outputs([path], force) as temps:
        _write_nrrd(volume, temps[0])
    return [path]


def read_map(path: str | os.PathLike) -> np.ndarray:
    """A 3D image (x, y, z) such as a mask or a label image, NIfTI or NRRD, as a numpy array (values as stored)."""
    path = Path(path)
    kind = image_format(path)
    _check_readable(path)
    try:
        if kind == "nifti":
            import nibabel as nib

            data = np.asarray(nib.load(str(path)).dataobj.get_unscaled())
        else:
            import nrrd

            data, _ = nrrd.read(str(path), index_order="F")
    except Exception as exc:  # the readers raise many types for broken files
        raise InputError(f"{path}: cannot read the image: {_first_line(exc)}") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D image, got shape {'×'.join(map(str, data.shape))}")
    return _native(data)


def fsl_gradient_paths(nifti_path: Path) -> tuple[Path, Path]:
    """The .bval and .bvec paths that belong beside a NIfTI file (same stem)."""
    name = nifti_path.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]
    return nifti_path.with_name(stem + ".bval"), nifti_path.with_name(stem + ".bvec")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")


def _read_nifti(path: Path) -> Volume4D:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj.get_unscaled())
    except Exception as exc:  # nibabel raises many types for broken files
        raise InputError(f"{path}: cannot read NIfTI: {_first_line(exc)}") from None
    # nibabel moves scl_slope/scl_inter from the header to the array proxy (1 and 0 when unset)
    scaling = (float(img.dataobj.slope), float(img.dataobj.inter))
    return Volume4D(_native(data), img.affine, None, scaling)


def _read_fsl_gradients(path: Path, bval, bvec, n_volumes: int) -> Gradients | None:
    if bval is None and bvec is None:
        bval, bvec = fsl_gradient_paths(path)
        if not bval.exists() and not bvec.exists():
            return None
    if bval is None or bvec is None or not Path(bval).exists() or not Path(bvec).exists():
        missing = [str(p) for p in (bval, bvec) if p is None or not Path(p).exists()]
        raise InputError(f"gradients incomplete: missing {', '.join(missing) or '.bval or .bvec'}")
    bvals = _load_table(Path(bval)).reshape(-1)
    vecs = _load_table(Path(bvec))
    if vecs.ndim == 2 and vecs.shape[0] == 3:
        vecs = vecs.T  # FSL layout: 3 rows, one column per volume
    if vecs.ndim != 2 or vecs.shape[1] != 3:
        raise InputError(f"{bvec}: expected 3 rows of gradient components, got shape {vecs.shape}")
    if bvals.size != n_volumes or vecs.shape[0] != n_volumes:
        raise InputError(
            f"the image has {n_volumes} volumes but {bval} lists {bvals.size} b-values and "
            f"{bvec} {vecs.shape[0]} directions")
    return Gradients(bvals, vecs, "fsl")


def _load_table(path: Path) -> np.ndarray:
    try:
        return np.atleast_1d(np.loadtxt(path, dtype=np.float64))
    except Exception as exc:
        raise InputError(f"{path}: cannot read numbers: {_first_line(exc)}") from None


def _read_nrrd(path: Path, gradients: bool) -> Volume4D:
    import nrrd

    try:
        data, header = nrrd.read(str(path))
    except Exception as exc:
        raise InputError(f"{path}: cannot read NRRD: {_first_line(exc)}") from None
    if data.ndim != 4:
        raise InputError(f"expected a 4D image (x, y, z, volumes), got a {data.ndim}D image of shape "
                         f"{'×'.join(map(str, data.shape))}")
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * 3 + ["list"])]
    non_spatial = [i for i, k in enumerate(kinds) if k not in ("domain", "space")]
    if len(non_spatial) != 1:
        raise InputError(f"{path}: expected exactly one non-spatial (list/vector) axis, kinds are {kinds}")
    axis = non_spatial[0]
    data = np.moveaxis(data, axis, 3)
    space = str(header.get("space", "left-posterior-superior")).lower()
    to_ras = RAS_TO_LPS if space in ("left-posterior-superior", "lps") else np.eye(3)
    if space not in ("left-posterior-superior", "lps", "right-anterior-superior", "ras"):
        raise InputError(f"{path}: unsupported NRRD space {space!r}")
    ijk_to_ras = np.eye(4)
    if "space directions" in header:
        directions = np.asarray(header["space directions"], dtype=np.float64)
        spatial = [i for i in range(4) if i != axis]
        ijk_to_ras[:3, :3] = to_ras @ directions[spatial].T
    if "space origin" in header:
        ijk_to_ras[:3, 3] = to_ras @ np.asarray(header["space origin"], dtype=np.float64)
    volume = Volume4D(_native(data), ijk_to_ras, frames=_nrrd_frames(header, axis, data.shape[3]))
    if gradients:
        volume.gradients = _nrrd_gradients(path, header, data.shape[3], to_ras)
    return volume


def _nrrd_gradients(path: Path, header: dict, n_volumes: int, to_ras: np.ndarray) -> Gradients | None:
    keys = sorted(k for k in header if str(k).startswith("DWMRI_gradient_"))
    if not keys:
        return None
    if len(keys) != n_volumes:
        raise InputError(f"{path}: {len(keys)} gradients for {n_volumes} volumes")
    try:
        b_max = float(header["DWMRI_b-value"])
        vectors = np.array([[float(c) for c in str(header[k]).split()] for k in keys])
    except (KeyError, ValueError) as exc:
        raise InputError(f"{path}: unreadable DWMRI gradient keys ({_first_line(exc)})") from None
    if vectors.shape != (n_volumes, 3):
        raise InputError(f"{path}: each DWMRI_gradient must have 3 components")
    frame = np.asarray(header.get("measurement frame", np.eye(3)), dtype=np.float64).T
    norms = np.linalg.norm(vectors, axis=1)
    bvals = b_max * norms**2
    units = np.divide(vectors, norms[:, None], out=np.zeros_like(vectors), where=norms[:, None] > 1e-12)
    return Gradients(bvals, units, "nrrd", to_ras @ frame)


def _nrrd_frames(header: dict, axis: int, n_volumes: int) -> FrameIndex | None:
    """The list axis' name, unit and index values, as Slicer writes them in .seq.nrrd files."""
    values = header.get(f"axis {axis} index values")
    if values is None:
        return None
    values = str(values).split()
    if len(values) != n_volumes:
        return None
    labels, units = header.get("labels"), header.get("units")
    name = str(labels[axis]) if labels is not None and len(labels) > axis and labels[axis] else "frame"
    unit = str(units[axis]) if units is not None and len(units) > axis else ""
    return FrameIndex(name, unit, values)


def _write_nifti(volume: Volume4D, path: Path) -> None:
    import nibabel as nib
    from nibabel.openers import ImageOpener
    from nibabel.volumeutils import array_to_file

    header = nib.Nifti1Header()
    header.set_data_shape(volume.shape)
    header.set_data_dtype(volume.data.dtype)
    header.set_qform(volume.ijk_to_ras, code=1)
    header.set_sform(volume.ijk_to_ras, code=1)
    header.set_xyzt_units("mm", "sec")
    header.set_slope_inter(*volume.scaling)
    header.set_data_offset(352)  # 348-byte header + 4-byte empty extension block
    with ImageOpener(str(path), "wb") as f:
        header.write_to(f)
        array_to_file(volume.data, f, volume.data.dtype, offset=352, order="F", nan2zero=False)


def _write_nrrd(volume: Volume4D, path: Path) -> None:
    import nrrd

    if volume.scaling != (1.0, 0.0):
        raise InputError("NRRD cannot store a value scaling (scl_slope/scl_inter); write NIfTI instead")
    to_lps = RAS_TO_LPS
    directions = np.vstack([np.full(3, np.nan), (to_lps @ volume.ijk_to_ras[:3, :3]).T])
    header = {
        "dimension": 4,
        "space": "left-posterior-superior",
        "kinds": ["list", "domain", "domain", "domain"],
        "space directions": directions,
        "space origin": to_lps @ volume.ijk_to_ras[:3, 3],
        "encoding": "gzip",
    }
    if volume.gradients is not None:
        g = volume.gradients.in_convention("nrrd", volume.ijk_to_ras)
        b_max = float(g.bvals.max()) if g.bvals.size else 0.0
        header["measurement frame"] = (to_lps @ g.measurement_frame).T
        header["modality"] = "DWMRI"
        header["DWMRI_b-value"] = f"{b_max:.6g}"
        scale = np.sqrt(np.clip(g.bvals, 0, None) / b_max) if b_max > 0 else np.zeros_like(g.bvals)
        for i, vec in enumerate(g.bvecs * scale[:, None]):
            header[f"DWMRI_gradient_{i:04d}"] = " ".join(f"{c:.10g}" for c in vec)
    if volume.frames is not None:
        header["labels"] = [volume.frames.name, "", "", ""]
        header["units"] = [volume.frames.unit, "", "", ""]
        header["axis 0 index values"] = " ".join(volume.frames.values)
    nrrd.write(str(path), np.moveaxis(volume.data, 3, 0), header, index_order="F")


def _native(data: np.ndarray) -> np.ndarray:
    """The array in native byte order (big-endian files give big-endian arrays)."""
    return data.astype(data.dtype.newbyteorder("="), copy=False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
