"""Read and write 4D images: NIfTI-1/-2 (.nii, .nii.gz) with FSL .bval/.bvec, and NRRD (.nrrd, .nhdr) DWI.

What gives the data its meaning is read into the `Volume4D` and written back: geometry in every form the
formats use (NIfTI qform and sform with their codes, spatial units; NRRD space directions or spacings, any
space, any axis order), timing (NIfTI pixdim[4]/toffset, NRRD frame index values), the header fields of
`headers`, a BIDS JSON sidecar beside the image, and the diffusion encoding: FSL .bval/.bvec (same stem,
or FSL's `bvals`/`bvecs`), an MRtrix gradient table (`stem.b` or `grad=`), NRRD DWMRI gradient or B-matrix
keys (with DWMRI_NEX repeats). Every failure is an `InputError` (or `OutputError`) with a one-line message.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from . import headers
from .atomic import atomic_outputs
from .errors import InputError
from .volume import FrameIndex, Gradients, Volume4D

NIFTI_SUFFIXES = (".nii.gz", ".nii")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
NIFTI1_MAX_DIM = 32767
# NRRD spaces → the matrix that maps their coordinates to RAS (its own inverse)
NRRD_SPACES = {"left-posterior-superior": np.diag([-1.0, -1.0, 1.0]), "lps": np.diag([-1.0, -1.0, 1.0]),
               "right-anterior-superior": np.eye(3), "ras": np.eye(3),
               "left-anterior-superior": np.diag([-1.0, 1.0, 1.0]), "las": np.diag([-1.0, 1.0, 1.0])}
DEFAULT_NRRD_SPACE = "left-posterior-superior"  # also taken when a file names none (as ITK does)
FSL_DATA_STEM = "data"  # FSL's data.nii.gz, whose gradients are the folder's bvals and bvecs
DIFFUSION_NAMES = re.compile(r"bval|bvec|\.b$|grad|dwi|dti|diffusion", re.IGNORECASE)


def image_format(path: str | os.PathLike) -> str:
    """The image format of a file, from its name.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str
        "nifti" (.nii, .nii.gz) or "nrrd" (.nrrd, .nhdr).

    Raises
    ------
    InputError
        For any other suffix.
    """
    name = Path(path).name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(NRRD_SUFFIXES):
        return "nrrd"
    raise InputError(f"{path}: unsupported file type; use .nii, .nii.gz, .nrrd or .nhdr")


def read_volume(path: str | os.PathLike, bval: str | os.PathLike | None = None,
                bvec: str | os.PathLike | None = None, gradients: bool = True,
                grad: str | os.PathLike | None = None) -> Volume4D:
    """Read a 4D image with its geometry, timing, header fields, sidecar and diffusion encoding.

    Parameters
    ----------
    path : str or os.PathLike
        NIfTI (.nii, .nii.gz) or NRRD (.nrrd, .nhdr) file of a 4D image.
    bval, bvec : str or os.PathLike or None
        FSL b-values and directions for a NIfTI image (default: `stem.bval`/`stem.bvec`, then
        `stem.bvals`/`stem.bvecs`, then for `data.nii[.gz]` FSL's `bvals`/`bvecs` in the same folder, as
        FSL's dtifit and the HCP lay them out).
    gradients : bool
        False ignores any diffusion encoding (for comparing images).
    grad : str or os.PathLike or None
        MRtrix gradient table for a NIfTI image (rows x y z b, world RAS directions, s/mm²; default
        `stem.b` when there is no FSL pair).

    Returns
    -------
    Volume4D
        Data (x, y, z, volumes), `ijk_to_ras` in millimetres.

    Raises
    ------
    InputError
        Unreadable file, not 4D, inconsistent gradients, unsupported NRRD space or unit.
    """
    path = Path(path)
    kind = image_format(path)
    _check_readable(path)
    if kind == "nifti":
        volume = _read_nifti(path)
        if gradients:
            volume.gradients = _nifti_gradients(path, bval, bvec, grad, volume.shape[3])
    else:
        if bval is not None or bvec is not None or grad is not None:
            raise InputError("--bval/--bvec/--grad apply to NIfTI input; NRRD files carry their own gradients")
        volume = _read_nrrd(path, gradients)
    sidecar = _read_sidecar(path)
    if sidecar is not None:
        volume.header["sidecar"] = sidecar
    return volume


def write_volume(volume: Volume4D, path: str | os.PathLike, force: bool = False) -> list[Path]:
    """Write a volume atomically as NIfTI or NRRD (from the file name).

    NIfTI with gradients also writes .bval/.bvec beside it, and a kept BIDS sidecar is written as
    `stem.json`. NIfTI-2 is written when NIfTI-1 cannot hold the shape or the input was NIfTI-2. What the
    format cannot hold is listed by `unstorable`.

    Parameters
    ----------
    volume : Volume4D
    path : str or os.PathLike
    force : bool
        Replace existing files.

    Returns
    -------
    list of Path
        The paths written.

    Raises
    ------
    InputError
        For an unsupported file name.
    OutputError
        When a file exists (without `force`) or cannot be written.
    """
    path = Path(path)
    kind = image_format(path)
    if kind == "nrrd" and path.name.lower().endswith(".nhdr"):
        raise InputError(f"{path}: writing detached .nhdr headers is not supported; use .nrrd")
    if kind == "nrrd" and volume.scaling != (1.0, 0.0):
        raise InputError("NRRD cannot store a value scaling (scl_slope/scl_inter); write NIfTI instead")
    fsl = kind == "nifti" and volume.gradients is not None
    sidecar = volume.header.get("sidecar")
    paths = [path] + (list(fsl_gradient_paths(path)) if fsl else []) + ([sidecar_path(path)] if sidecar else [])
    with atomic_outputs(paths, force) as temps:
        if kind == "nifti":
            _write_nifti(volume, temps[0])
        else:
            _write_nrrd(volume, temps[0])
        if fsl:
            g = volume.gradients.in_convention("fsl", volume.ijk_to_ras)
            np.savetxt(temps[1], g.bvals[None, :], fmt="%.6g")
            np.savetxt(temps[2], g.bvecs.T, fmt="%.10g")
        if sidecar:
            temps[-1].write_text(json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return paths


def unstorable(volume_header: dict, frames: FrameIndex | None, kind: str) -> list[str]:
    """What an image with this header and frame index would lose in a format, in words.

    Parameters
    ----------
    volume_header : dict
        A `Volume4D.header`.
    frames : FrameIndex or None
    kind : str
        "nifti" or "nrrd".

    Returns
    -------
    list of str
        Empty when it keeps everything.
    """
    lost = []
    nifti, nrrd = volume_header.get("nifti"), volume_header.get("nrrd")
    if kind == "nrrd" and nifti is not None:
        f = nifti["fields"]
        if (f["qform_code"], f["sform_code"]) not in ((1, 1), (1, 0), (0, 1), (0, 0)) or (
                f["qform_code"] and f["sform_code"] and not _same_nifti_transforms(nifti)):
            lost.append(f"the NIfTI qform/sform pair (codes {f['qform_code']}/{f['sform_code']}; "
                        "NRRD keeps one geometry)")
        if f["slice_code"] or f["slice_duration"] or f["dim_info"]:
            lost.append("the slice timing (slice_code, slice_duration, dim_info)")
        if f["intent_code"] or f["intent_name"] or any(f[f"intent_p{i}"] for i in (1, 2, 3)):
            lost.append("the intent")
        lost += [name for name, key in (("the description", "descrip"), ("aux_file", "aux_file"))
                 if f[key]]
        if f["cal_min"] or f["cal_max"]:
            lost.append("cal_min/cal_max")
        if nifti["extensions"]:
            lost.append(f"{len(nifti['extensions'])} NIfTI header extension(s)")
    if kind == "nifti":
        if nrrd is not None:
            lost += [f"the NRRD field {name!r}" for name in nrrd["fields"]
                     if name not in ("kinds", "spacings", "measurement frame", "space units")]
            plain = _plain_keys(nrrd["keys"])
            lost += [f"{len(plain)} NRRD key/value pair(s) ({', '.join(list(plain)[:3])})"] if plain else []
        if frames is not None and _uniform_times(frames) is None:
            lost.append(f"the frame index {frames.name!r} ({frames.unit or 'no unit'}; NIfTI holds only "
                        "evenly spaced times)")
    return lost


def diffusion_hint(path: str | os.PathLike) -> str | None:
    """Why a NIfTI image may hold diffusion data although no gradients were read with it.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str or None
        The hint (gradient-like file names beside it or in its name), or None. (An NRRD file carries its own.)
    """
    path = Path(path)
    if image_format(path) != "nifti":
        return None
    beside = sorted(p.name for p in path.parent.iterdir()
                    if p != path and p.is_file() and DIFFUSION_NAMES.search(p.name) and
                    not p.name.lower().endswith(NIFTI_SUFFIXES + NRRD_SUFFIXES))[:3]
    if beside:
        return f"{path.name} may be diffusion data ({', '.join(beside)} beside it)"
    if DIFFUSION_NAMES.search(path.name):
        return f"{path.name} may be diffusion data (its name says so)"
    return None


def read_map(path: str | os.PathLike) -> np.ndarray:
    """A 3D image such as a mask or a label image, NIfTI or NRRD, as a numpy array (values as stored).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ndarray, shape (x, y, z)

    Raises
    ------
    InputError
        For an unreadable file or an image that is not 3D.
    """
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


def image_stem(path: Path) -> str:
    """The file name without its image suffix (.nii.gz, .nii, .nrrd, .nhdr).

    Parameters
    ----------
    path : Path

    Returns
    -------
    str
    """
    name = path.name
    for suffix in NIFTI_SUFFIXES + NRRD_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def fsl_gradient_paths(nifti_path: Path) -> tuple[Path, Path]:
    """The .bval and .bvec paths that belong beside a NIfTI file (same stem).

    Parameters
    ----------
    nifti_path : Path

    Returns
    -------
    bval, bvec : Path
    """
    stem = image_stem(nifti_path)
    return nifti_path.with_name(stem + ".bval"), nifti_path.with_name(stem + ".bvec")


def sidecar_path(image_path: Path) -> Path:
    """The BIDS JSON sidecar beside an image (same stem).

    Parameters
    ----------
    image_path : Path

    Returns
    -------
    Path
    """
    return image_path.with_name(image_stem(image_path) + ".json")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")


def _read_sidecar(path: Path) -> dict | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        sidecar = json.loads(side.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{side}: the JSON sidecar beside the image is not valid JSON ({_first_line(exc)}); "
                         "fix or move it") from None
    if not isinstance(sidecar, dict):
        raise InputError(f"{side}: the JSON sidecar beside the image must hold an object")
    return sidecar


# --- NIfTI -----------------------------------------------------------------------------------------------


def _read_nifti(path: Path) -> Volume4D:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj.get_unscaled())
    except Exception as exc:  # nibabel raises many types for broken files
        raise InputError(f"{path}: cannot read NIfTI: {_first_line(exc)}") from None
    entry = headers.nifti_header(img.header, img.header.extensions)
    ijk_to_ras = img.affine.copy()
    ijk_to_ras[:3] *= headers.nifti_space_scale(entry["fields"])  # millimetres, whatever the file's unit
    # nibabel moves scl_slope/scl_inter from the header to the array proxy (1 and 0 when unset)
    scaling = (float(img.dataobj.slope), float(img.dataobj.inter))
    volume = Volume4D(_native(data), ijk_to_ras, None, scaling, header={"nifti": entry})
    volume.frames = _nifti_frames(entry, volume.shape[3])
    return volume


def _nifti_frames(entry: dict, n_volumes: int) -> FrameIndex | None:
    """Frame times from pixdim[4] (the repetition time) and toffset, when the header gives a time unit;
    written to the precision of the header's floats (NIfTI-1: single, NIfTI-2: double)."""
    fields = entry["fields"]
    unit, tr = headers.nifti_time_unit(fields), fields["pixdim"][4]
    if unit is None or not tr > 0 or n_volumes < 2:
        return None
    digits = 7 if entry["version"] == 1 else 15
    return FrameIndex("time", unit, [f"{fields['toffset'] + i * tr:.{digits}g}" for i in range(n_volumes)])


def _write_nifti(volume: Volume4D, path: Path) -> None:
    from nibabel.openers import ImageOpener
    from nibabel.volumeutils import array_to_file

    entry = volume.header.get("nifti")
    version = 2 if max(volume.shape) > NIFTI1_MAX_DIM or (entry and entry["version"] == 2) else 1
    header = _nifti_header_class(version)()
    header.set_data_shape(volume.shape)
    header.set_data_dtype(volume.data.dtype)
    if entry is not None and _nifti_geometry_matches(entry, volume.ijk_to_ras):
        for extension in headers.apply_nifti(header, entry):
            header.extensions.append(extension)
    else:  # no NIfTI header, or one whose geometry is not this volume's: scanner space from ijk_to_ras
        header.set_qform(volume.ijk_to_ras, code=1)
        header.set_sform(volume.ijk_to_ras, code=1)
        times = None if volume.frames is None else _uniform_times(volume.frames)
        header.set_xyzt_units("mm", "unknown" if times is None else {"s": "sec", "ms": "msec",
                                                                        "us": "usec"}[volume.frames.unit])
        if times is not None:
            header["pixdim"][4], header["toffset"] = times[1], times[0]
    header.set_slope_inter(*volume.scaling)
    header["vox_offset"] = 0  # write_to sets it after the header and its extensions
    with ImageOpener(str(path), "wb") as f:
        header.write_to(f)
        array_to_file(volume.data, f, volume.data.dtype, offset=int(header["vox_offset"]), order="F",
                      nan2zero=False)


def _nifti_geometry_matches(entry: dict, ijk_to_ras: np.ndarray) -> bool:
    """Whether a kept NIfTI header describes `ijk_to_ras` (mm), i.e. the volume's geometry is the file's."""
    header = _nifti_header_class(entry["version"])()
    headers.apply_nifti(header, entry)
    affine = header.get_best_affine()
    affine[:3] *= headers.nifti_space_scale(entry["fields"])
    return bool(np.allclose(affine, ijk_to_ras, rtol=1e-6, atol=1e-4))


def _same_nifti_transforms(entry: dict) -> bool:
    fields, header = entry["fields"], _nifti_header_class(entry["version"])()
    for name in ("pixdim", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z",
                 "srow_x", "srow_y", "srow_z"):
        header[name] = fields[name]
    header["qform_code"] = header["sform_code"] = 1
    return bool(np.allclose(header.get_qform(), header.get_sform(), rtol=1e-6, atol=1e-4))


def _nifti_header_class(version: int):
    """nibabel's header class of NIfTI-`version` (its quaternion tolerance follows the header's floats)."""
    import nibabel as nib

    return nib.Nifti2Header if version == 2 else nib.Nifti1Header


def _uniform_times(frames: FrameIndex) -> tuple[float, float] | None:
    """(first time, interval) of an evenly spaced time index in s, ms or µs, else None."""
    if frames.unit not in ("s", "ms", "us") or len(frames.values) < 2:
        return None
    try:
        times = np.array([float(v) for v in frames.values])
    except ValueError:
        return None
    steps = np.diff(times)
    if not (np.isfinite(times).all() and steps[0] > 0 and np.allclose(steps, steps[0], rtol=1e-6)):
        return None
    return float(times[0]), float(steps[0])


def _nifti_gradients(path: Path, bval, bvec, grad, n_volumes: int) -> Gradients | None:
    if bval is not None or bvec is not None:
        return _read_fsl_gradients(bval, bvec, n_volumes)
    if grad is not None:
        return _read_mrtrix_gradients(Path(grad), n_volumes)
    stem, folder = image_stem(path), path.parent
    pairs = [(folder / f"{stem}.bval", folder / f"{stem}.bvec"), (folder / f"{stem}.bvals", folder / f"{stem}.bvecs")]
    if stem == FSL_DATA_STEM:
        pairs.append((folder / "bvals", folder / "bvecs"))
    for b_path, v_path in pairs:
        if b_path.is_file() or v_path.is_file():
            return _read_fsl_gradients(b_path, v_path, n_volumes)
    if (folder / f"{stem}.b").is_file():
        return _read_mrtrix_gradients(folder / f"{stem}.b", n_volumes)
    return None


def _read_fsl_gradients(bval, bvec, n_volumes: int) -> Gradients:
    missing = [str(p) for p in (bval, bvec) if p is None or not Path(p).is_file()]
    if missing:
        raise InputError(f"gradients incomplete: missing {', '.join(missing) or '.bval or .bvec'}")
    bvals = _load_table(Path(bval)).reshape(-1)
    vecs = _load_table(Path(bvec))
    if vecs.shape[0] == 1 and vecs.size == 3:
        vecs = vecs.reshape(3, 1)  # one volume written as one row
    if vecs.shape[0] == 3 and vecs.shape[1] != 3 or vecs.shape == (3, 3):
        vecs = vecs.T  # FSL layout: 3 rows, one column per volume
    if vecs.shape[1] != 3:
        raise InputError(f"{bvec}: expected 3 rows of gradient components (one column per volume), "
                         f"got {vecs.shape[0]} rows of {vecs.shape[1]}")
    if bvals.size != n_volumes or vecs.shape[0] != n_volumes:
        raise InputError(
            f"the image has {n_volumes} volumes but {bval} lists {bvals.size} b-values and "
            f"{bvec} {vecs.shape[0]} directions")
    return Gradients(bvals, vecs, "fsl")


def _read_mrtrix_gradients(path: Path, n_volumes: int) -> Gradients:
    """An MRtrix gradient table: one row `x y z b` per volume, directions in world (RAS) coordinates; kept
    as world directions (convention "nrrd" with an identity RAS frame)."""
    if not path.is_file():
        raise InputError(f"{path}: no such gradient table")
    table = _load_table(path)
    if table.shape[1] != 4 or table.shape[0] != n_volumes:
        raise InputError(f"{path}: an MRtrix gradient table needs {n_volumes} rows of x y z b, "
                         f"got {table.shape[0]} rows of {table.shape[1]}")
    return Gradients(table[:, 3], table[:, :3], "nrrd", np.eye(3))


def _load_table(path: Path) -> np.ndarray:
    """A whitespace- or comma-separated table of numbers as a 2D array (one row for a single line)."""
    try:
        text = path.read_text(encoding="utf-8").replace(",", " ")
        rows = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        table = np.array([[float(x) for x in row] for row in rows], dtype=np.float64)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read numbers: {_first_line(exc)}") from None
    if table.ndim != 2 or table.size == 0:
        raise InputError(f"{path}: expected a table of numbers with the same count on every line")
    return table


# --- NRRD ------------------------------------------------------------------------------------------------


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
    spatial = [i for i in range(4) if i != axis]
    space = str(header.get("space", DEFAULT_NRRD_SPACE)).lower()
    if space not in NRRD_SPACES:
        raise InputError(f"{path}: unsupported NRRD space {space!r} (supported: {', '.join(NRRD_SPACES)})")
    to_ras = NRRD_SPACES[space] @ np.diag(_nrrd_unit_scale(path, header))  # space units → mm
    ijk_to_ras = np.eye(4)
    if "space directions" in header:
        directions = np.asarray(header["space directions"], dtype=np.float64)[spatial]
    else:  # per-axis spacings and no orientation: axis-aligned in the default space
        spacings = np.asarray(header.get("spacings", [1.0] * 4), dtype=np.float64)[spatial]
        directions = np.diag(np.where(np.isfinite(spacings), spacings, 1.0))
    ijk_to_ras[:3, :3] = to_ras @ directions.T
    if "space origin" in header:
        ijk_to_ras[:3, 3] = to_ras @ np.asarray(header["space origin"], dtype=np.float64)
    volume = Volume4D(_native(data), ijk_to_ras, frames=_nrrd_frames(header, axis, data.shape[3]))
    dropped = {f"axis {axis} index values"}
    if gradients:
        volume.gradients, used = _nrrd_gradients(path, header, data.shape[3], NRRD_SPACES[space])
        dropped |= used
    volume.header["nrrd"] = headers.nrrd_header(header, axis, dropped)
    return volume


def _nrrd_unit_scale(path: Path, header: dict) -> np.ndarray:
    units = header.get("space units")
    if units is None:
        return np.ones(3)
    try:
        return np.array([headers.NRRD_SPACE_UNITS[str(u).strip().lower()] for u in units])
    except KeyError as exc:
        raise InputError(f"{path}: unsupported NRRD space unit {exc.args[0]!r} (use mm, m, cm or um)") from None


def _nrrd_gradients(path: Path, header: dict, n_volumes: int, to_ras: np.ndarray) -> tuple[Gradients | None, set]:
    """The DWMRI gradient or B-matrix keys (NA-MIC DWI convention), expanded by DWMRI_NEX repeats, and the
    header entries that the gradients replace. B-matrix keys without repeats stay in the header (the NRRD
    writer gives them back as they were)."""
    numbered = {}
    for key in header:
        match = re.fullmatch(r"DWMRI_(gradient|B-matrix|NEX)_0*([0-9]+)", str(key))
        if match:
            numbered.setdefault(match.group(1), {})[int(match.group(2))] = str(header[key])
    if "gradient" in numbered and "B-matrix" in numbered:
        raise InputError(f"{path}: both DWMRI_gradient and DWMRI_B-matrix keys; a DWI gives one of them")
    form = "gradient" if "gradient" in numbered else "B-matrix" if "B-matrix" in numbered else None
    if form is None:
        return None, set()
    rows, repeats = numbered[form], numbered.get("NEX", {})
    try:
        b_nominal = float(header["DWMRI_b-value"])
        values = []
        for i in sorted(rows):
            values += [[float(c) for c in rows[i].split()]] * int(repeats.get(i, "1"))
    except (KeyError, ValueError) as exc:
        raise InputError(f"{path}: unreadable DWMRI keys ({_first_line(exc)})") from None
    width = 3 if form == "gradient" else 6
    if len(values) != n_volumes or any(len(v) != width for v in values):
        raise InputError(f"{path}: {len(values)} DWMRI_{form} entries of {width} numbers needed for "
                         f"{n_volumes} volumes")
    values = np.array(values)
    if form == "gradient":
        norms = np.linalg.norm(values, axis=1)
        bvals = b_nominal * norms**2
        directions = np.divide(values, norms[:, None], out=np.zeros_like(values), where=norms[:, None] > 1e-12)
    else:  # B = g gᵀ scaled by b / b_nominal: b from the trace, the direction from the principal eigenvector
        bvals, directions = _b_matrix_gradients(values, b_nominal)
    frame = np.asarray(header.get("measurement frame", np.eye(3)), dtype=np.float64).T
    replaced = "gradient|NEX|B-matrix" if repeats else "gradient|NEX"
    used = {k for k in header if re.fullmatch(rf"DWMRI_({replaced})_[0-9]+|DWMRI_b-value", str(k))}
    used.add("measurement frame")
    return Gradients(bvals, directions, "nrrd", to_ras @ frame), used


def _b_matrix_gradients(rows: np.ndarray, b_nominal: float) -> tuple[np.ndarray, np.ndarray]:
    """b-values (V,) and unit directions (V, 3) of B-matrices given as rows bxx bxy bxz byy byz bzz."""
    b = np.empty((len(rows), 3, 3))
    b[:, 0, 0], b[:, 0, 1], b[:, 0, 2], b[:, 1, 1], b[:, 1, 2], b[:, 2, 2] = rows.T
    b[:, 1, 0], b[:, 2, 0], b[:, 2, 1] = b[:, 0, 1], b[:, 0, 2], b[:, 1, 2]
    trace = np.trace(b, axis1=1, axis2=2)
    _, vectors = np.linalg.eigh(b)
    directions = vectors[:, :, -1] * (trace > 1e-12)[:, None]
    return b_nominal * trace, directions


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


def _write_nrrd(volume: Volume4D, path: Path) -> None:
    import nrrd

    entry = volume.header.get("nrrd") or {"space": None, "list_axis": 0, "fields": {}, "keys": {}}
    axis = entry["list_axis"]
    space = (entry["space"] or DEFAULT_NRRD_SPACE).lower()
    from_ras = NRRD_SPACES[space]
    fields = headers.nrrd_fields_for_writing(entry)
    fields.pop("spacings", None)  # the geometry is written as space directions
    fields.pop("space units", None)  # in millimetres
    directions = np.full((4, 3), np.nan)
    directions[[i for i in range(4) if i != axis]] = (from_ras @ volume.ijk_to_ras[:3, :3]).T
    kinds = ["domain"] * 4
    kinds[axis] = "list"
    header = {"dimension": 4, "space": space, "kinds": fields.pop("kinds", kinds), "space directions": directions,
              "space origin": from_ras @ volume.ijk_to_ras[:3, 3], "encoding": "gzip", **fields}
    keys = dict(entry["keys"])
    if volume.gradients is not None:
        g = volume.gradients.in_convention("nrrd", volume.ijk_to_ras)
        b_max = float(g.bvals.max()) if g.bvals.size else 0.0
        header["measurement frame"] = (from_ras @ g.measurement_frame).T
        keys["modality"] = "DWMRI"
        keys["DWMRI_b-value"] = f"{b_max:.6g}"
        if g is not volume.gradients or not any(k.startswith("DWMRI_B-matrix_") for k in keys):
            keys = {k: v for k, v in keys.items() if not k.startswith("DWMRI_B-matrix_")}
            scale = np.sqrt(np.clip(g.bvals, 0, None) / b_max) if b_max > 0 else np.zeros_like(g.bvals)
            for i, vec in enumerate(g.bvecs * scale[:, None]):
                keys[f"DWMRI_gradient_{i:04d}"] = " ".join(f"{c:.10g}" for c in vec)
    if volume.frames is not None:
        for name, value in (("labels", volume.frames.name), ("units", volume.frames.unit)):
            header[name] = list(header.get(name) or [""] * 4)
            header[name][axis] = value
        keys[f"axis {axis} index values"] = " ".join(volume.frames.values)
    nrrd.write(str(path), np.moveaxis(volume.data, 3, axis), {**header, **keys}, index_order="F")


def _plain_keys(keys: dict) -> dict:
    """Key/value pairs other than the DWI convention's (which NIfTI keeps as .bval/.bvec)."""
    return {k: v for k, v in keys.items() if not (k.startswith("DWMRI_") or k == "modality")}


def _native(data: np.ndarray) -> np.ndarray:
    """The array in native byte order (big-endian files give big-endian arrays)."""
    return data.astype(data.dtype.newbyteorder("="), copy=False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
