"""Codecs behind one small interface. Each codec module provides:

- `Config`: a dataclass of its settings (a `JsonSettings`: `to_json()` / `Config.from_json(dict)`), whose
  `__post_init__` bounds every setting;
- `default_config() -> Config`: the settings used when none are given;
- `encode(volume, config, progress) -> list[EncodedSlice]`: one entry per axial slice of the `Volume4D`
  (uses torch if it trains);
- `placeholders(volume, config) -> list[EncodedSlice]`: the entries as `encode` makes them, with empty
  members (for rate control);
- `check_slices(config, manifest) -> int`: raise `ArchiveError` unless the codec's own fields of every slice
  entry are valid and its settings fit in the members' bytes (the codec-independent fields are checked
  already); returns the decoding work, about one unit per multiply-add (a shared member's model counted
  once);
- `decode_slice(config, entry, member, shape) -> np.ndarray`: (x, y, volumes), numpy only: float, or the
  data's own dtype for an exact codec;
- `SHARED_MEMBER`: True when one member, stored with slice 0, serves every slice (each entry names it);
- `EXACT`: True when decoding is bit-exact: the manifest then stores the SHA-256 of every slice's decoded
  voxels.

Modules are imported on first use, so that decoding never imports what only encoding needs.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import typing
from dataclasses import asdict, dataclass, field, fields
from types import ModuleType

import numpy as np

from ..errors import ArchiveError, InputError

CODECS = {"siren": "SirenCompressLib.codecs.siren", "siren3d": "SirenCompressLib.codecs.siren3d",
          "lossless": "SirenCompressLib.codecs.lossless", "fmri": "SirenCompressLib.codecs.fmri"}


@dataclass
class EncodedSlice:
    """One axial slice as a codec stored it: manifest fields plus an optional binary member, or the index
    of the slice whose member it shares (`member_of`)."""

    entry: dict = field(default_factory=dict)
    member: bytes | None = None
    member_of: int | None = None


class JsonSettings:
    """`to_json` / `from_json` for a codec's settings dataclass (as the manifest stores them)."""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict):
        """The settings from the manifest: known keys only, each of its field's JSON type (finite numbers),
        within the bounds of `__post_init__`; else `ArchiveError`."""
        codec = cls.__module__.rsplit(".", 1)[-1]
        hints = typing.get_type_hints(cls)
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ArchiveError(f"unknown {codec} settings in the archive: {', '.join(unknown)}")
        for name, value in d.items():
            if not _json_fits(hints[name], value):
                raise ArchiveError(f"bad {codec} settings in the archive: {name}={value!r}")
        try:
            return cls(**d)
        except InputError as exc:
            raise ArchiveError(f"bad {codec} settings in the archive: {exc}") from None


def _json_fits(hint, value) -> bool:
    """Whether a JSON value has the type `hint` (bool, int, float, str, None or a union of them)."""
    if hint is bool or isinstance(value, bool):
        return hint is bool and isinstance(value, bool)
    if hint is int:
        return isinstance(value, int)
    if hint is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    return any(_json_fits(h, value) for h in typing.get_args(hint))


def sha256_hex(array: np.ndarray) -> str:
    """Hex SHA-256 of an array's values: little-endian, C order."""
    return hashlib.sha256(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()).hexdigest()


def get_codec(name: str) -> ModuleType:
    if name not in CODECS:
        raise InputError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    return importlib.import_module(CODECS[name])
