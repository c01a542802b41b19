"""The header fields of NIfTI and NRRD files that carry meaning, kept as JSON so that an archive gives them back.

A `Volume4D.header` is `{}` or holds one of:

- `"nifti"`: `{"version": 1 | 2, "fields": {...}, "extensions": [[code, base64], ...]}` — the NIfTI-1/-2
  header fields in `NIFTI_FIELDS` exactly as stored (both transforms and their codes, pixdim, units, timing,
  slice timing, intent, description, calibration), and the header extensions (NIfTI-1 standard, §"extension");
- `"nrrd"`: `{"space": str | None, "list_axis": int, "fields": {...}, "keys": {...}}` — the standard NRRD
  fields in `NRRD_FIELDS` (per-axis lists in the file's axis order), the position of the volume axis, and the
  `key:=value` pairs (NRRD 5 "key/value pairs") other than those rebuilt from the gradients and frames;
- `"sidecar"`: the BIDS JSON sidecar that sat beside the input (`stem.json`), as parsed.

`check` validates what an archive holds; `kept` and `unstorable` say, in words, what is kept and what an
output format cannot hold.
"""

from __future__ import annotations

import base64
import math

import numpy as np

# NIfTI-1/-2 header fields that carry meaning (dim, datatype, bitpix, vox_offset, scl_* and magic are rebuilt
# from the data and `Volume4D.scaling`).
NIFTI_FIELDS = ("dim_info", "intent_p1", "intent_p2", "intent_p3", "intent_code", "intent_name", "slice_start",
                "slice_end", "slice_code", "slice_duration", "pixdim", "xyzt_units", "cal_min", "cal_max",
                "toffset", "descrip", "aux_file", "qform_code", "sform_code", "quatern_b", "quatern_c",
                "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z")
NIFTI_TEXT = ("intent_name", "descrip", "aux_file")
NIFTI_INTEGER = ("dim_info", "intent_code", "slice_start", "slice_end", "slice_code", "xyzt_units",
                 "qform_code", "sform_code")
NIFTI_VECTORS = {"pixdim": 8, "srow_x": 4, "srow_y": 4, "srow_z": 4}
# NIfTI xform codes (nifti1.h)
XFORM_NAMES = {0: "unknown", 1: "scanner", 2: "aligned", 3: "Talairach", 4: "MNI", 5: "template"}
# NIfTI spatial and temporal unit codes → millimetres / seconds
NIFTI_SPACE_UNITS = {0: 1.0, 1: 1000.0, 2: 1.0, 3: 1e-3}  # unknown (taken as mm), m, mm, µm
NIFTI_TIME_UNITS = {8: "s", 16: "ms", 24: "us"}
MAX_EXTENSION_BYTES = 1 << 20

# NRRD fields kept verbatim (aliases are read under their spelled-out names)
NRRD_FIELDS = ("content", "sample units", "spacings", "thicknesses", "axis mins", "axis maxs", "centerings",
               "labels", "units", "space units", "kinds", "old min", "old max", "measurement frame")
NRRD_ALIASES = {"axismins": "axis mins", "axismaxs": "axis maxs", "oldmin": "old min", "oldmax": "old max"}
NRRD_NUMBER_LISTS = ("spacings", "thicknesses", "axis mins", "axis maxs")
NRRD_PER_AXIS = ("spacings", "thicknesses", "axis mins", "axis maxs", "centerings", "labels", "units", "kinds")
# NRRD fields rebuilt from the data and geometry (never kept)
NRRD_STRUCTURE = {"type", "dimension", "space dimension", "space", "sizes", "space directions", "endian",
                  "encoding", "space origin", "data file", "datafile", "line skip", "lineskip", "byte skip",
                  "byteskip", "min", "max"}
NRRD_SPACE_UNITS = {"": 1.0, "mm": 1.0, "m": 1000.0, "cm": 10.0, "um": 1e-3, "µm": 1e-3, "μm": 1e-3}


def nifti_header(header, extensions) -> dict:
    """The `"nifti"` entry of a nibabel `Nifti1Header` / `Nifti2Header` and its extension list.

    Parameters
    ----------
    header : nibabel.nifti1.Nifti1Header or nibabel.nifti2.Nifti2Header
        The header as read (NIfTI-1 or -2, told apart by `sizeof_hdr`: 348 or 540 bytes).
    extensions : iterable of nibabel.nifti1.Nifti1Extension
        The header extensions (`header.extensions`).

    Returns
    -------
    dict
        `{"version": 1 | 2, "fields": {name: value}, "extensions": [[code, base64], ...]}`: the fields of
        `NIFTI_FIELDS` as JSON values (text fields decoded as Latin-1 with trailing NULs stripped, codes as
        int, the rest as float or lists of float), each extension's code and its content in base64.
    """
    fields = {}
    for name in NIFTI_FIELDS:
        value = header[name]
        if name in NIFTI_TEXT:
            fields[name] = bytes(value).rstrip(b"\0").decode("latin-1")
        elif name in NIFTI_INTEGER:
            fields[name] = int(value)
        else:
            fields[name] = np.asarray(value, dtype=np.float64).tolist()
    version = 2 if header.sizeof_hdr == 540 else 1
    coded = [[int(e.get_code()), base64.b64encode(e.get_content()).decode("ascii")] for e in extensions]
    return {"version": version, "fields": fields, "extensions": coded}


def apply_nifti(header, entry: dict):
    """Write the fields of a `"nifti"` entry into a nibabel header.

    Parameters
    ----------
    header : nibabel.nifti1.Nifti1Header or nibabel.nifti2.Nifti2Header
        Changed in place: every field the entry holds.
    entry : dict
        A `"nifti"` entry, as `nifti_header` makes it (and `check` accepts).

    Returns
    -------
    list of nibabel.nifti1.Nifti1Extension
        The entry's header extensions, for the caller to attach to the image.
    """
    import nibabel as nib

    for name, value in entry["fields"].items():
        header[name] = value.encode("latin-1") if name in NIFTI_TEXT else value
    return [nib.nifti1.Nifti1Extension(code, base64.b64decode(content)) for code, content in entry["extensions"]]


def nifti_space_scale(fields: dict) -> float:
    """Millimetres per unit of the header's spatial unit.

    Parameters
    ----------
    fields : dict
        The `"fields"` of a `"nifti"` entry; only `xyzt_units` is read (its bits 0–2, NIfTI-1 standard
        `XYZT_TO_SPACE`: 1 metre, 2 mm, 3 µm).

    Returns
    -------
    float
        1000 for metres, 1 for mm, 0.001 for µm; 1 when the unit is unknown (0) or not a spatial code.
    """
    return NIFTI_SPACE_UNITS.get(int(fields["xyzt_units"]) & 7, 1.0)


def nifti_time_unit(fields: dict) -> str | None:
    """The header's temporal unit.

    Parameters
    ----------
    fields : dict
        The `"fields"` of a `"nifti"` entry; only `xyzt_units` is read (its bits 3–5, NIfTI-1 standard
        `XYZT_TO_TIME`: 8 s, 16 ms, 24 µs).

    Returns
    -------
    str or None
        "s", "ms" or "us"; None for unknown (0) or a code that is not a time unit (Hz, ppm, rad/s).
    """
    return NIFTI_TIME_UNITS.get(int(fields["xyzt_units"]) & 56)


def nrrd_header(header: dict, list_axis: int, dropped_keys) -> dict:
    """The `"nrrd"` entry of a pynrrd header.

    Parameters
    ----------
    header : dict
        The header as `nrrd.read` returns it (NRRD file format 5).
    list_axis : int
        The position (0–3) of the volume axis among the file's axes.
    dropped_keys : collection of str
        Key/value pairs (NRRD 5 "key/value pairs") rebuilt from elsewhere (gradients, frame index), not kept.

    Returns
    -------
    dict
        `{"space": str or None, "list_axis": int, "fields": {...}, "keys": {...}}`: the fields of
        `NRRD_FIELDS` (aliases under their spelled-out names) as JSON values, non-finite numbers as None, and
        the other key/value pairs as text; the structural fields (`NRRD_STRUCTURE`) are left out.
    """
    fields = {}
    for key, value in header.items():
        name = NRRD_ALIASES.get(key, key)
        if name in NRRD_FIELDS and key not in dropped_keys:
            fields[name] = _json_ready(value)
    keys = {str(k): str(v) for k, v in header.items()
            if NRRD_ALIASES.get(k, k) not in NRRD_FIELDS and k not in NRRD_STRUCTURE and k not in dropped_keys}
    space = header.get("space")
    return {"space": None if space is None else str(space), "list_axis": int(list_axis), "fields": fields,
            "keys": keys}


def nrrd_fields_for_writing(entry: dict) -> dict:
    """The kept NRRD fields as pynrrd writes them.

    Parameters
    ----------
    entry : dict
        A `"nrrd"` entry, as `nrrd_header` makes it.

    Returns
    -------
    dict
        Field name → value: the per-axis number lists (`NRRD_NUMBER_LISTS`) as float64 arrays with None back
        to NaN, the measurement frame as a (3, 3) float64 array, the rest as stored.
    """
    out = dict(entry["fields"])
    for name in NRRD_NUMBER_LISTS:
        if name in out:
            out[name] = np.array([math.nan if v is None else v for v in out[name]], dtype=np.float64)
    if "measurement frame" in out:
        out["measurement frame"] = np.asarray(out["measurement frame"], dtype=np.float64)
    return out


def _json_ready(value):
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return str(value)


def check(header) -> None:
    """Check that `header` is a well-formed `Volume4D.header` (as read from an archive).

    Parameters
    ----------
    header : object
        The parsed JSON: `{}` or a dict with `"nifti"`, `"nrrd"` and/or `"sidecar"` entries, laid out as the
        module docstring says.

    Raises
    ------
    ValueError
        For any other key or layout, a field of the wrong type, length or range (NIfTI text fields: at most
        80 Latin-1 characters; integers: 32-bit), extension content that is not base64, or extensions over
        1 MiB in all.
    """
    if not isinstance(header, dict) or not set(header) <= {"nifti", "nrrd", "sidecar"}:
        raise ValueError("header must be an object with nifti, nrrd or sidecar entries")
    if "nifti" in header:
        _check_nifti(header["nifti"])
    if "nrrd" in header:
        _check_nrrd(header["nrrd"])
    if "sidecar" in header and not isinstance(header["sidecar"], dict):
        raise ValueError("header.sidecar must be an object")


def _check_nifti(entry) -> None:
    if not (isinstance(entry, dict) and set(entry) == {"version", "fields", "extensions"}
            and entry["version"] in (1, 2) and isinstance(entry["fields"], dict)
            and set(entry["fields"]) == set(NIFTI_FIELDS) and isinstance(entry["extensions"], list)):
        raise ValueError("header.nifti must hold version 1 or 2, every kept field and an extension list")
    for name, value in entry["fields"].items():
        if name in NIFTI_TEXT:
            ok = isinstance(value, str) and len(value) <= 80 and all(ord(c) < 256 for c in value)
        elif name in NIFTI_INTEGER:
            ok = _is_int(value) and abs(value) < 2**31
        elif name in NIFTI_VECTORS:
            ok = isinstance(value, list) and len(value) == NIFTI_VECTORS[name] and all(map(_is_number, value))
        else:
            ok = _is_number(value)
        if not ok:
            raise ValueError(f"header.nifti field {name} is malformed")
    total = 0
    for item in entry["extensions"]:
        if not (isinstance(item, list) and len(item) == 2 and _is_int(item[0]) and 0 <= item[0] < 2**31
                and isinstance(item[1], str)):
            raise ValueError("header.nifti extensions must be [code, base64] pairs")
        total += len(item[1])
        try:
            base64.b64decode(item[1], validate=True)
        except ValueError:
            raise ValueError("header.nifti extension content is not base64") from None
    if total > MAX_EXTENSION_BYTES * 4 // 3 + 4:
        raise ValueError("header.nifti extensions are larger than 1 MiB")


def _check_nrrd(entry) -> None:
    if not (isinstance(entry, dict) and set(entry) == {"space", "list_axis", "fields", "keys"}
            and (entry["space"] is None or isinstance(entry["space"], str))
            and entry["list_axis"] in (0, 1, 2, 3) and isinstance(entry["fields"], dict)
            and set(entry["fields"]) <= set(NRRD_FIELDS) and isinstance(entry["keys"], dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in entry["keys"].items())):
        raise ValueError("header.nrrd must hold space, list_axis, fields and keys")
    for name, value in entry["fields"].items():
        if name in NRRD_PER_AXIS:
            ok = isinstance(value, list) and len(value) == 4 and all(
                v is None or isinstance(v, str) or _is_number(v) for v in value)
        elif name == "measurement frame":
            ok = isinstance(value, list) and len(value) == 3 and all(
                isinstance(r, list) and len(r) == 3 and all(map(_is_number, r)) for r in value)
        elif name == "space units":
            ok = isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, str) or _is_number(value)
        if not ok:
            raise ValueError(f"header.nrrd field {name!r} is malformed")


def kept(header: dict) -> list[str]:
    """What the header keeps, in words (for `sirencompress info`).

    Parameters
    ----------
    header : dict
        A `Volume4D.header` that `check` accepts.

    Returns
    -------
    list of str
        One line per entry (NIfTI, NRRD, sidecar), e.g. "NIfTI-1, qform scanner (code 1), sform aligned
        (code 2), voxel 2 × 2 × 2, TR 3 s"; empty for `{}`.
    """
    out = []
    if "nifti" in header:
        f = header["nifti"]["fields"]
        parts = [f"NIfTI-{header['nifti']['version']}",
                 f"qform {XFORM_NAMES.get(f['qform_code'], f['qform_code'])} (code {f['qform_code']})",
                 f"sform {XFORM_NAMES.get(f['sform_code'], f['sform_code'])} (code {f['sform_code']})",
                 "voxel " + " × ".join(f"{v:g}" for v in f["pixdim"][1:4])]
        unit = nifti_time_unit(f)
        if unit and f["pixdim"][4] > 0:
            parts.append(f"TR {f['pixdim'][4]:g} {unit}")
        if f["slice_code"] or f["slice_duration"]:
            parts.append(f"slice timing (code {f['slice_code']}, {f['slice_duration']:g} per slice, "
                         f"slices {f['slice_start']}–{f['slice_end']}, dim_info {f['dim_info']})")
        if f["intent_code"] or f["intent_name"]:
            parts.append(f"intent {f['intent_code']} {f['intent_name']!r}".rstrip())
        if f["descrip"]:
            parts.append(f"description {f['descrip']!r}")
        if header["nifti"]["extensions"]:
            parts.append(f"{len(header['nifti']['extensions'])} header extension(s)")
        out.append(", ".join(parts))
    if "nrrd" in header:
        n = header["nrrd"]
        parts = [f"NRRD space {n['space'] or 'none'}", f"volume axis {n['list_axis']}"]
        parts += [f"{name}" for name in n["fields"]]
        if n["keys"]:
            parts.append(f"{len(n['keys'])} key/value pair(s)")
        out.append(", ".join(parts))
    if "sidecar" in header:
        out.append(f"BIDS sidecar ({len(header['sidecar'])} keys)")
    return out


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
