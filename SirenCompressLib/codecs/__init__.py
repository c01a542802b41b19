"""Codecs behind one small interface. Each codec module provides:

- `Config`: a dataclass of its settings with `to_json()` / `Config.from_json(dict)`;
- `default_config() -> Config`: the settings used when none are given;
- `encode(volume, config, progress) -> list[EncodedSlice]`: one entry per axial slice of the `Volume4D`
  (uses torch if it trains);
- `placeholders(volume, config) -> list[EncodedSlice]`: the entries as `encode` makes them, with empty
  members (for rate control);
- `decode_slice(config, entry, member, shape) -> np.ndarray`: (x, y, volumes), numpy only: float, or the
  data's own dtype for an exact codec.

Modules are imported on first use, so that decoding never imports what only encoding needs.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from types import ModuleType

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
        try:
            return cls(**d)
        except (TypeError, InputError) as exc:
            raise ArchiveError(f"the archive's codec settings are not valid: {exc}") from None


def get_codec(name: str) -> ModuleType:
    if name not in CODECS:
        raise InputError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    return importlib.import_module(CODECS[name])
