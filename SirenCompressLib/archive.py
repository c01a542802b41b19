"""The `.sirz` container: a zip of `manifest.json` and one binary member per coded slice.

Reading is defensive: only known member names, size limits checked before reading, CRCs verified,
JSON only (nothing is ever unpickled), and every problem raised as one `ArchiveError`. See docs/FORMAT.md.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import headers
from .atomic import atomic_outputs
from .codecs import CODECS
from .errors import ArchiveError
from .volume import SUPPORTED_DTYPES

FORMAT_NAME = "sirz"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
MAX_MEMBER_BYTES = 1 << 30
MAX_VOXELS = 1 << 32
MEMBER_NAME = re.compile(r"slices/[0-9]{4,6}\.bin")


@dataclass
class Archive:
    manifest: dict
    members: dict[str, bytes] = field(default_factory=dict)


def slice_member_name(z: int) -> str:
    return f"slices/{z:04d}.bin"


def json_number(value: float, dtype: np.dtype) -> int | float:
    """A value of the data's dtype as a JSON number that reads back to exactly that value."""
    dtype = np.dtype(dtype)
    return int(value) if dtype.kind in "iu" else float(str(dtype.type(value)))


def to_bytes(archive: Archive) -> bytes:
    """The archive as the bytes of a .sirz file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(_info(MANIFEST, zipfile.ZIP_DEFLATED),
                    json.dumps(archive.manifest, indent=1, allow_nan=False).encode())
        for name, data in archive.members.items():
            zf.writestr(_info(name, zipfile.ZIP_STORED), data)  # already entropy-coded
    return buffer.getvalue()


def write_archive(archive: Archive, path: str | os.PathLike, force: bool = False) -> int:
    """Write atomically; returns the file size in bytes."""
    data = to_bytes(archive)
    with atomic_outputs([path], force) as (temp,):
        temp.write_bytes(data)
    return len(data)


def read_archive(path: str | os.PathLike) -> Archive:
    """Read and validate a .sirz file."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {info.filename: info for info in zf.infolist()}
            if MANIFEST not in infos:
                raise ArchiveError(f"{path}: not a .sirz archive (no {MANIFEST})")
            for name, info in infos.items():
                if name != MANIFEST and not MEMBER_NAME.fullmatch(name):
                    raise ArchiveError(f"{path}: unexpected member {name!r}")
                limit = MAX_MANIFEST_BYTES if name == MANIFEST else MAX_MEMBER_BYTES
                if info.file_size > limit:
                    raise ArchiveError(f"{path}: member {name} is larger than the {limit >> 20} MiB limit")
            manifest = _parse_manifest(zf.read(MANIFEST), path)
            members = {name: zf.read(name) for name in infos if name != MANIFEST}
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
            NotImplementedError, RuntimeError) as exc:  # RuntimeError: encrypted; NotImplemented: method
        raise ArchiveError(f"{path}: not a valid .sirz archive (corrupt or truncated: {exc})") from None
    check_manifest(manifest, members)
    return Archive(manifest, members)


def check_manifest(m: dict, members: dict[str, bytes]) -> None:
    """Raise `ArchiveError` unless the codec-independent fields of `m` are complete and consistent."""
    version = m.get("format_version")
    if m.get("format") != FORMAT_NAME or not isinstance(version, int):
        raise ArchiveError("not a .sirz manifest (format name or version missing)")
    if version > FORMAT_VERSION:
        raise ArchiveError(f"archive format version {version} is newer than this SirenCompress "
                           f"reads ({FORMAT_VERSION}); upgrade SirenCompress")
    if version < 1:
        raise ArchiveError(f"unknown archive format version {version}")
    codec = m.get("codec")
    if not isinstance(codec, dict) or not isinstance(codec.get("name"), str) \
            or not isinstance(codec.get("config"), dict):
        raise ArchiveError("the manifest does not name its codec and settings")
    if codec["name"] not in CODECS:
        raise ArchiveError(f"unknown codec {codec['name']!r}; this SirenCompress knows {', '.join(CODECS)}")
    shape = m.get("shape")
    if not (isinstance(shape, list) and len(shape) == 4 and all(_is_int(n) and n > 0 for n in shape)):
        raise ArchiveError(f"bad shape {shape!r} (expected 4 positive integers)")
    if math.prod(shape) > MAX_VOXELS:
        raise ArchiveError(f"shape {shape} is larger than this reader accepts")
    if m.get("dtype") not in SUPPORTED_DTYPES:
        raise ArchiveError(f"unsupported voxel type {m.get('dtype')!r}")
    _check_matrix(m.get("ijk_to_ras"), 4, 4, "ijk_to_ras")
    _check_numbers(m.get("scaling"), 2, "scaling")
    _check_numbers(m.get("value_range"), 2, "value_range")
    gradients = m.get("gradients")
    if gradients is not None:
        if not isinstance(gradients, dict) or gradients.get("convention") not in ("fsl", "nrrd"):
            raise ArchiveError("bad gradients entry")
        _check_numbers(gradients.get("bvals"), shape[3], "gradients.bvals")
        _check_matrix(gradients.get("bvecs"), shape[3], 3, "gradients.bvecs")
        if gradients["convention"] == "nrrd":
            _check_matrix(gradients.get("measurement_frame"), 3, 3, "gradients.measurement_frame")
    frames = m.get("frames")
    if frames is not None and not (
            isinstance(frames, dict) and set(frames) == {"name", "unit", "values"}
            and isinstance(frames["name"], str) and isinstance(frames["unit"], str)
            and isinstance(frames["values"], list) and len(frames["values"]) == shape[3]
            and all(isinstance(v, str) for v in frames["values"])):
        raise ArchiveError(f"bad frames entry (expected name, unit and {shape[3]} index values)")
    try:
        headers.check(m.get("header", {}))
    except ValueError as exc:
        raise ArchiveError(f"bad header entry: {exc}") from None
    slices = m.get("slices")
    if not isinstance(slices, list) or len(slices) != shape[2]:
        raise ArchiveError(f"the manifest must list {shape[2]} slices")
    for z, entry in enumerate(slices):
        if not isinstance(entry, dict) or entry.get("index") != z:
            raise ArchiveError(f"slice entry {z} is malformed")
        name = entry.get("member")
        if name is not None and name not in members:
            raise ArchiveError(f"slice {z}: member {name!r} is missing (truncated archive?)")


def _parse_manifest(raw: bytes, path: Path) -> dict:
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise ArchiveError(f"{path}: manifest.json is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ArchiveError(f"{path}: manifest.json must hold a JSON object")
    return manifest


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _info(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
    info.compress_type = compression
    return info


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def _check_numbers(values, n: int, what: str) -> None:
    if not (isinstance(values, list) and len(values) == n and all(map(_is_number, values))):
        raise ArchiveError(f"{what} must be a list of {n} finite numbers")


def _check_matrix(rows, n: int, k: int, what: str) -> None:
    if not (isinstance(rows, list) and len(rows) == n):
        raise ArchiveError(f"{what} must be a {n}×{k} matrix")
    for row in rows:
        _check_numbers(row, k, what)
