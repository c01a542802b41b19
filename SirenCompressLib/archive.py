"""The `.sirz` container: a zip of `manifest.json` and one binary member per coded slice.

Reading is defensive: only known member names, stored members whose declared sizes are checked against
the file and the manifest before anything is read, CRCs verified, JSON only (nothing is ever unpickled),
every manifest field checked (the codec checks its own fields), a decode budget bounded by the file's
size, a digest over the whole archive (format 2), and every problem raised as one `ArchiveError`. See
docs/FORMAT.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import headers
from .atomic import atomic_outputs
from .codecs import REGISTRY, get_codec
from .errors import ArchiveError
from .volume import SUPPORTED_DTYPES

FORMAT_NAME = "sirz"
FORMAT_VERSION = 2  # 2: the manifest's "digest", the slices' "voxels_sha256" (exact codecs)
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20
MAX_VOXELS = 1 << 32
MEMBER_NAME = re.compile(r"slices/[0-9]{4,6}\.bin")
SHA256 = re.compile(r"[0-9a-f]{64}")
# Decode budget (docs/FORMAT.md): an archive of B bytes may declare at most VOXEL_FLOOR + VOXELS_PER_BYTE·B
# voxels and WORK_FLOOR + WORK_PER_BYTE·B units of decoding work (about one multiply-add each).
VOXEL_FLOOR = 1 << 22
VOXELS_PER_BYTE = 1 << 14
WORK_FLOOR = 1 << 32
WORK_PER_BYTE = 1 << 26
SLICE_KEYS = {"index", "kind", "member", "bytes", "metrics", "voxels_sha256", "max_error"}  # the others: the codec's
MAX_ERROR_LIMIT = 10**9  # a slice's "max_error" (near-lossless bound) lies in 1 … 10^9
NOISE_SIGMA, NOISE_METHOD = "noise_sigma", "noise_method"  # "source" keys: the noise at encode (lossy codecs)
SCENE_KIND = "scene"  # the manifest's "kind" of a scene archive (scene_archive.py); single-volume ones have none
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
              NotImplementedError, RuntimeError)  # RuntimeError: encrypted; NotImplemented: method


@dataclass
class Archive:
    """A .sirz archive in memory.

    Attributes
    ----------
    manifest : dict
        The JSON manifest: format, codec and settings, shape, dtype, geometry, gradients, slice entries,
        metrics.
    members : dict of str to bytes
        The binary members (coded slices) by name, e.g. "slices/0000.bin".
    """
    manifest: dict
    members: dict[str, bytes] = field(default_factory=dict)


def slice_member_name(z: int) -> str:
    """The member name of slice `z`'s coded data.

    Parameters
    ----------
    z : int

    Returns
    -------
    str
        "slices/NNNN.bin".
    """
    return f"slices/{z:04d}.bin"


def json_number(value: float, dtype: np.dtype) -> int | float:
    """A value of the data's dtype as a JSON number that reads back to exactly that value.

    Parameters
    ----------
    value : float
    dtype : numpy.dtype

    Returns
    -------
    int or float
    """
    dtype = np.dtype(dtype)
    return int(value) if dtype.kind in "iu" else float(str(dtype.type(value)))


def to_bytes(archive: Archive) -> bytes:
    """The archive as the bytes of a .sirz file (a zip), its manifest with the digest of the whole.

    Parameters
    ----------
    archive : Archive

    Returns
    -------
    bytes
    """
    return container_bytes(archive.manifest, archive.members)


def container_bytes(manifest: dict, members: dict[str, bytes], deflate: Callable[[str], bool] = lambda name: False
                    ) -> bytes:
    """The zip of a .sirz container (a single-volume or a scene archive): `manifest.json` with the digest of the
    whole added, then the members in order, stored (or deflated where `deflate(name)` says so), with fixed
    timestamps.

    Parameters
    ----------
    manifest : dict
        Without "digest".
    members : dict of str to bytes
    deflate : callable
        Whether a member is deflated; the others are stored (already entropy-coded).

    Returns
    -------
    bytes
    """
    manifest = {**manifest, "digest": digest(manifest, members)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(_info(MANIFEST, zipfile.ZIP_DEFLATED), json.dumps(manifest, indent=1, allow_nan=False).encode())
        for name, data in members.items():
            zf.writestr(_info(name, zipfile.ZIP_DEFLATED if deflate(name) else zipfile.ZIP_STORED), data)
    return buffer.getvalue()


def digest(manifest: dict, members: dict[str, bytes]) -> str:
    """Hex SHA-256 of the canonical manifest (without its digest), then of each member in name order: its
    name, a zero byte, its length (uint64, little-endian) and its bytes.

    Parameters
    ----------
    manifest : dict
    members : dict of str to bytes

    Returns
    -------
    str
    """
    h = hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())
    for name in sorted(members):
        h.update(name.encode() + b"\0" + len(members[name]).to_bytes(8, "little"))
        h.update(members[name])
    return h.hexdigest()


def write_archive(archive: Archive, path: str | os.PathLike, force: bool = False) -> int:
    """Write an archive atomically as a .sirz file.

    Parameters
    ----------
    archive : Archive
    path : str or os.PathLike
    force : bool
        Replace an existing file.

    Returns
    -------
    int
        The file size in bytes.

    Raises
    ------
    OutputError
        When the file exists (without `force`) or cannot be written.
    """
    data = to_bytes(archive)
    with atomic_outputs([path], force) as (temp,):
        temp.write_bytes(data)
    return len(data)


def read_archive(path: str | os.PathLike) -> Archive:
    """Read and validate a .sirz file.

    Nothing larger than the file's own size is read or allocated before the whole manifest is checked.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Archive

    Raises
    ------
    ArchiveError
        For a missing, unreadable, corrupt, truncated or modified file (its digest does not match), and for a
        scene archive (`scene_archive.read_scene_archive` reads those).
    """
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such file")
    try:
        return _read(path, path.stat().st_size)
    except ArchiveError as exc:
        raise ArchiveError(f"{path}: {exc}") from None
    except ZIP_ERRORS as exc:
        raise ArchiveError(f"{path}: {not_an_archive(exc)}") from None


def archive_from_bytes(data: bytes) -> Archive:
    """Read and validate a .sirz held in memory (a scene archive's node member), as `read_archive` does a file.

    Parameters
    ----------
    data : bytes

    Returns
    -------
    Archive

    Raises
    ------
    ArchiveError
        As `read_archive`.
    """
    try:
        return _read(io.BytesIO(data), len(data))
    except ZIP_ERRORS as exc:
        raise ArchiveError(not_an_archive(exc)) from None


def not_an_archive(exc: Exception) -> str:
    """The message for a zip-level error (one of `ZIP_ERRORS`).

    Parameters
    ----------
    exc : Exception

    Returns
    -------
    str
    """
    return f"not a valid .sirz archive (corrupt or truncated: {exc})"


def read_manifest(zf: zipfile.ZipFile) -> dict:
    """The JSON object of a .sirz container's manifest, read no further than its declared size (at most
    `MAX_MANIFEST_BYTES`), after checking that no member name occurs twice.

    Parameters
    ----------
    zf : zipfile.ZipFile

    Returns
    -------
    dict

    Raises
    ------
    ArchiveError
        When there is no manifest, it is not the first member at the start of the file (every writer puts it there;
        a node archive stored inside a truncated scene archive would otherwise be read as the whole), it is too large
        or not a JSON object, or a member name occurs twice.
    """
    names = zf.namelist()
    if len(set(names)) != len(names):
        raise ArchiveError("a member name occurs twice")
    if MANIFEST not in names:
        raise ArchiveError(f"not a .sirz archive (no {MANIFEST})")
    if zf.getinfo(MANIFEST).header_offset != 0:  # a truncated scene archive could read as a node archive in it
        raise ArchiveError(f"{MANIFEST} is not at the start of the file: a truncated or concatenated archive")
    size = zf.getinfo(MANIFEST).file_size
    if size > MAX_MANIFEST_BYTES:
        raise ArchiveError(f"{MANIFEST} is larger than the {MAX_MANIFEST_BYTES >> 20} MiB limit")
    with zf.open(MANIFEST) as f:  # read at most its declared size: a deflate bomb stops there
        return _parse_manifest(f.read(size))


def manifest_kind(path: str | os.PathLike) -> str:
    """Which kind of .sirz a file is, from its manifest: `SCENE_KIND` for a scene archive, else "volume" (every
    archive written before scene archives, and anything that is not one: reading it says what is wrong).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str
    """
    try:
        with zipfile.ZipFile(path) as zf:
            return SCENE_KIND if read_manifest(zf).get("kind") == SCENE_KIND else "volume"
    except (ArchiveError, *ZIP_ERRORS):
        return "volume"


def _read(source, size: int) -> Archive:
    with zipfile.ZipFile(source) as zf:
        manifest = read_manifest(zf)
        if manifest.get("kind") == SCENE_KIND:
            raise ArchiveError("a scene archive (several nodes): read one node with "
                               "read_scene_archive(path).node_archive(NAME), the whole scene with load_scene")
        infos = _member_infos(zf, size)
        stored = manifest.pop("digest", None)
        if stored is not None and not (isinstance(stored, str) and SHA256.fullmatch(stored)):
            raise ArchiveError("the manifest's digest is not a SHA-256")
        check_manifest(manifest, {name: info.file_size for name, info in infos.items()}, size)
        if stored is None and manifest["format_version"] >= 2:
            raise ArchiveError("the manifest has no digest")
        members = {name: zf.read(name) for name in infos}
    if stored is not None and stored != digest(manifest, members):
        raise ArchiveError("the archive's digest does not match its contents: it was modified or damaged")
    return Archive(manifest, members)


def _member_infos(zf: zipfile.ZipFile, size: int) -> dict[str, zipfile.ZipInfo]:
    """The slice members' entries, after checking every entry's name and declared sizes: members are
    stored, and together no larger than the file."""
    members = {}
    for info in zf.infolist():
        if info.filename == MANIFEST:
            continue
        if not MEMBER_NAME.fullmatch(info.filename):
            raise ArchiveError(f"unexpected member {info.filename!r}")
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise ArchiveError(f"member {info.filename} is not stored as it is")
        members[info.filename] = info
    if sum(info.file_size for info in members.values()) > size:
        raise ArchiveError("the members' declared sizes add up to more than the file")
    return members


def check_archive(archive: Archive) -> None:
    """`check_manifest` for an archive in memory (its size: that of its bytes).

    Parameters
    ----------
    archive : Archive

    Raises
    ------
    ArchiveError
        As `check_manifest`.
    """
    check_manifest(archive.manifest, {name: len(data) for name, data in archive.members.items()},
                   len(to_bytes(archive)))


def check_manifest(m: dict, members: dict[str, int], archive_bytes: int) -> None:
    """Check a manifest against its archive's members before decoding.

    Parameters
    ----------
    m : dict
        The manifest.
    members : dict of str to int
        Member name → size in bytes.
    archive_bytes : int
        The archive's size.

    Raises
    ------
    ArchiveError
        Unless the manifest is complete and consistent with the members, its codec's settings and slice
        entries are valid, and decoding it stays within the decode budget.
    """
    unknown = set(m) - set(FIELDS)
    if unknown:
        raise ArchiveError(f"unknown manifest keys: {', '.join(sorted(map(str, unknown)))}")
    for key, check in FIELDS.items():  # in order: later checks rely on earlier fields
        if key in m:
            check(m[key], m)
        elif key not in OPTIONAL:
            raise ArchiveError(f"the manifest has no {key!r}")
    module = get_codec(m["codec"]["name"])
    _check_members(m["slices"], members, module.MEMBERS)
    _check_voxel_digests(m, module.EXACT)
    _check_error_bounds(m, module.EXACT)
    voxels = math.prod(m["shape"])
    if voxels > VOXEL_FLOOR + VOXELS_PER_BYTE * archive_bytes:
        raise ArchiveError(f"the manifest declares {voxels:,} voxels, more than an archive of {archive_bytes:,} "
                           "bytes decodes to (see the decode budget in docs/FORMAT.md)")
    work = module.check_slices(module.Config.from_json(m["codec"]["config"]), m)
    if work > WORK_FLOOR + WORK_PER_BYTE * archive_bytes:
        raise ArchiveError(f"decoding would take {work:.3g} operations, more than an archive of {archive_bytes:,} "
                           "bytes may ask for (see the decode budget in docs/FORMAT.md)")


def codec_keys(entry: dict) -> set[str]:
    """The keys of a slice entry that belong to its codec.

    Parameters
    ----------
    entry : dict

    Returns
    -------
    set of str
    """
    return set(entry) - SLICE_KEYS


def is_number(x) -> bool:
    """Whether `x` is a finite JSON number (not a bool), integers below 2^64 in magnitude (so that floats hold them).

    Parameters
    ----------
    x : object

    Returns
    -------
    bool
    """
    return isinstance(x, float) and math.isfinite(x) or is_int(x) and abs(x) < 2**64


def is_int(x) -> bool:
    """Whether `x` is an int and not a bool.

    Parameters
    ----------
    x : object

    Returns
    -------
    bool
    """
    return isinstance(x, int) and not isinstance(x, bool)


# --- one function per manifest key ---------------------------------------------------------------------


def _format(value, m: dict) -> None:
    if value != FORMAT_NAME:
        raise ArchiveError("not a .sirz manifest (format name missing)")


def _format_version(version, m: dict) -> None:
    if not is_int(version):
        raise ArchiveError("not a .sirz manifest (format version missing)")
    if version > FORMAT_VERSION:
        raise ArchiveError(f"archive format version {version} is newer than this SirenCompress "
                           f"reads ({FORMAT_VERSION}); upgrade SirenCompress")
    if version < 1:
        raise ArchiveError(f"unknown archive format version {version}")


def _library_version(value, m: dict) -> None:
    if not (isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable()):
        raise ArchiveError("bad library_version (expected a short version string)")


def _codec(codec, m: dict) -> None:
    if not (isinstance(codec, dict) and set(codec) == {"name", "config"} and isinstance(codec["name"], str)
            and isinstance(codec["config"], dict)):
        raise ArchiveError("the manifest does not name its codec and settings")
    if codec["name"] not in REGISTRY:
        raise ArchiveError(f"unknown codec {codec['name']!r}; this SirenCompress knows {', '.join(REGISTRY)}")


def _shape(shape, m: dict) -> None:
    if not (isinstance(shape, list) and len(shape) == 4 and all(is_int(n) and n > 0 for n in shape)):
        raise ArchiveError(f"bad shape {shape!r} (expected 4 positive integers)")
    if math.prod(shape) > MAX_VOXELS:
        raise ArchiveError(f"shape {shape} is larger than this reader accepts")


def _dtype(value, m: dict) -> None:
    if value not in SUPPORTED_DTYPES:
        raise ArchiveError(f"unsupported voxel type {value!r}")


def _ijk_to_ras(matrix, m: dict) -> None:
    """A 4×4 matrix of entries within ±10⁹ whose 3×3 part is invertible (condition number below 10¹⁰),
    with voxel sizes (its column lengths) of 10⁻⁶ to 10⁶ mm."""
    _check_matrix(matrix, 4, 4, "ijk_to_ras")
    a = np.array(matrix, dtype=np.float64)
    sizes = np.linalg.norm(a[:3, :3], axis=0)
    if not (np.abs(a).max() <= 1e9 and np.all((sizes >= 1e-6) & (sizes <= 1e6)) and np.linalg.cond(a[:3, :3]) < 1e10):
        raise ArchiveError("ijk_to_ras is singular or out of range: its 3×3 part must be invertible, voxel "
                           "sizes 1e-6 to 1e6 mm, entries within ±1e9")


def _scaling(values, m: dict) -> None:
    _check_numbers(values, 2, "scaling")
    if values[0] == 0:
        raise ArchiveError("the scaling slope must not be 0")


def _value_range(values, m: dict) -> None:
    dtype = np.dtype(m["dtype"])
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    if not (isinstance(values, list) and len(values) == 2
            and all(is_int(v) if dtype.kind in "iu" else is_number(v) for v in values)
            and info.min <= values[0] <= values[1] <= info.max):
        raise ArchiveError(f"value_range must be [min, max] of {dtype.name} values")


def _gradients(g, m: dict) -> None:
    if g is None:
        return
    if not (isinstance(g, dict) and {"convention", "bvals", "bvecs"} <= set(g) <= {
            "convention", "bvals", "bvecs", "measurement_frame"} and g["convention"] in ("fsl", "nrrd")):
        raise ArchiveError("bad gradients entry")
    n = m["shape"][3]
    _check_numbers(g["bvals"], n, "gradients.bvals")
    _check_matrix(g["bvecs"], n, 3, "gradients.bvecs")
    if g["convention"] == "nrrd":
        _check_matrix(g.get("measurement_frame"), 3, 3, "gradients.measurement_frame")
    elif g.get("measurement_frame") is not None:
        raise ArchiveError("fsl gradients have no measurement frame")


def _frames(frames, m: dict) -> None:
    if frames is not None and not (
            isinstance(frames, dict) and set(frames) == {"name", "unit", "values"}
            and isinstance(frames["name"], str) and isinstance(frames["unit"], str)
            and isinstance(frames["values"], list) and len(frames["values"]) == m["shape"][3]
            and all(isinstance(v, str) for v in frames["values"])):
        raise ArchiveError(f"bad frames entry (expected name, unit and {m['shape'][3]} index values)")


def _header(header, m: dict) -> None:
    """The input file's header fields that carry meaning (`headers.check`)."""
    try:
        headers.check(header)
    except ValueError as exc:
        raise ArchiveError(f"bad header entry: {exc}") from None


def _source(source, m: dict) -> None:
    """Facts about the input: any JSON scalars; name, format and noise_method strings, file_bytes and gzip_bytes
    counts, a positive noise_sigma."""
    if not (isinstance(source, dict) and all(v is None or isinstance(v, (str, bool)) or is_number(v)
                                             for v in source.values())):
        raise ArchiveError("bad source entry (expected an object of JSON scalars)")
    for key in ("name", "format", NOISE_METHOD):
        if not isinstance(source.get(key, ""), str):
            raise ArchiveError(f"bad source.{key} (expected a string)")
    sigma = source.get(NOISE_SIGMA)
    if not (sigma is None or is_number(sigma) and sigma > 0):
        raise ArchiveError("bad source.noise_sigma (expected a positive number)")
    for key in ("file_bytes", "gzip_bytes"):
        if not (source.get(key) is None or is_int(source[key]) and source[key] >= 0):
            raise ArchiveError(f"bad source.{key} (expected a byte count)")


def _encode_seconds(value, m: dict) -> None:
    if not (is_number(value) and value >= 0):
        raise ArchiveError("encode_seconds must be a number of seconds")


def _metrics(value, m: dict, what: str = "metrics") -> None:
    if not (isinstance(value, dict) and set(value) == {"mse", "psnr", "ssim"} and is_number(value["mse"])
            and value["mse"] >= 0 and all(value[k] is None or is_number(value[k]) for k in ("psnr", "ssim"))):
        raise ArchiveError(f"bad {what} (expected mse, psnr and ssim numbers)")


def _slices(slices, m: dict) -> None:
    """The codec-independent fields of every entry; the codec checks the rest (`check_slices`)."""
    if not isinstance(slices, list) or len(slices) != m["shape"][2]:
        raise ArchiveError(f"the manifest must list {m['shape'][2]} slices")
    for z, entry in enumerate(slices):
        if not (isinstance(entry, dict) and entry.get("index") == z and is_int(entry["index"])
                and isinstance(entry.get("kind"), str) and "member" in entry
                and (entry["member"] is None or isinstance(entry["member"], str))
                and is_int(entry.get("bytes")) and entry["bytes"] >= 0):
            raise ArchiveError(f"slice entry {z} is malformed (index, kind, member, bytes)")
        _metrics(entry.get("metrics"), m, f"metrics of slice {z}")


FIELDS: dict[str, Callable[[object, dict], None]] = {
    "format": _format, "format_version": _format_version, "library_version": _library_version, "codec": _codec,
    "shape": _shape, "dtype": _dtype, "ijk_to_ras": _ijk_to_ras, "scaling": _scaling, "value_range": _value_range,
    "gradients": _gradients, "frames": _frames, "header": _header, "source": _source, "encode_seconds": _encode_seconds,
    "metrics": _metrics, "slices": _slices,
}
OPTIONAL = {"frames", "header"}  # absent in archives written before 0.2 / 0.4


def _check_members(slices: list[dict], members: dict[str, int], serves: str) -> None:
    """Every member is named by its own slice, and by the slices it serves (`Codec.MEMBERS`): every slice, of a
    codec whose member serves the volume; the next ones, of a codec whose member serves a slab. Its size is
    the `bytes` of its own slice (0 for the others); no member is left over."""
    owner = 0
    for z, entry in enumerate(slices):
        name = entry["member"]
        if serves == "slice" or serves == "slab" and (z == 0 or name != slices[z - 1]["member"]):
            owner = z
        if name is None:
            if entry["bytes"]:
                raise ArchiveError(f"slice {z} has no member but {entry['bytes']} bytes")
            continue
        if name != slice_member_name(owner) or slices[owner]["member"] != name:
            raise ArchiveError(f"slice {z} names member {name!r}, not {slice_member_name(owner)!r} or none")
        if name not in members:
            raise ArchiveError(f"slice {z}: member {name!r} is missing (truncated archive?)")
        if entry["bytes"] != (members[name] if z == owner else 0):
            raise ArchiveError(f"slice {z}: its bytes ({entry['bytes']}) do not match member {name} "
                               f"({members[name]} bytes)")
    unused = set(members) - {entry["member"] for entry in slices}
    if unused:
        raise ArchiveError(f"member {min(unused)} belongs to no slice")


def _check_voxel_digests(m: dict, exact: bool) -> None:
    """Slices of an exact codec carry the SHA-256 of their decoded voxels from format 2 on; others none."""
    wanted = exact and m["format_version"] >= 2
    for z, entry in enumerate(m["slices"]):
        value = entry.get("voxels_sha256")
        if ("voxels_sha256" in entry) != wanted or wanted and not (isinstance(value, str) and SHA256.fullmatch(value)):
            raise ArchiveError(f"slice {z}: voxels_sha256 must be {'a SHA-256' if wanted else 'absent'}")


def _check_error_bounds(m: dict, exact: bool) -> None:
    """A slice's "max_error" (an exact codec's near-lossless bound, format 2 on) is an integer 1 … 2^31 − 1."""
    for z, entry in enumerate(m["slices"]):
        value = entry.get("max_error", 1)
        if "max_error" in entry and not (exact and m["format_version"] >= 2) or \
                not (is_int(value) and 1 <= value <= MAX_ERROR_LIMIT):
            raise ArchiveError(f"slice {z}: max_error must be an integer 1 to {MAX_ERROR_LIMIT}, of an exact codec")


def _parse_manifest(raw: bytes) -> dict:
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ArchiveError(f"manifest.json is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ArchiveError("manifest.json must hold a JSON object")
    return manifest


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _info(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
    info.compress_type = compression
    return info


def _check_numbers(values, n: int, what: str) -> None:
    if not (isinstance(values, list) and len(values) == n and all(map(is_number, values))):
        raise ArchiveError(f"{what} must be a list of {n} finite numbers")


def _check_matrix(rows, n: int, k: int, what: str) -> None:
    if not (isinstance(rows, list) and len(rows) == n):
        raise ArchiveError(f"{what} must be a {n}×{k} matrix")
    for row in rows:
        _check_numbers(row, k, what)
