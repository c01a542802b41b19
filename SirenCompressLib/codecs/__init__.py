"""Codecs behind one small interface, the `Codec` protocol, and the registry of them (`REGISTRY`).

A codec is a module of this package that satisfies `Codec`; registering it in `REGISTRY` gives it the CLI
flags (from its `Config` field metadata), the Slicer panel's choice and widgets, settings JSON for child
processes, rate control where it declares it, and the conformance tests. Modules are imported on first use,
so that decoding never imports what only encoding needs.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import re
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from ..errors import ArchiveError, InputError

REGISTRY = {"transform": "SirenCompressLib.codecs.transform", "siren": "SirenCompressLib.codecs.siren",
            "siren3d": "SirenCompressLib.codecs.siren3d", "lossless": "SirenCompressLib.codecs.lossless",
            "fmri": "SirenCompressLib.codecs.fmri"}  # `suggest` asks them in this order
DEFAULT = "siren"  # the codec for any input that no codec's `preferred` claims
RATE_TARGETS = ("ratio", "psnr")  # what `Codec.RATE_CONTROL` may name
MEMBER_KINDS = ("slice", "slab", "volume")  # what `Codec.MEMBERS` may be


@dataclass
class EncodedSlice:
    """One axial slice as a codec stored it: manifest fields plus an optional binary member, or the index
    of the slice whose member it shares (`member_of`)."""

    entry: dict = field(default_factory=dict)
    member: bytes | None = None
    member_of: int | None = None


class Codec(Protocol):
    """What every codec module provides (a module satisfies this protocol; see `get_codec`).

    The module's docstring opens with `Codec "NAME": ` and a one-paragraph summary, which help texts show
    (see `summary`).

    Attributes
    ----------
    NAME : str
        The codec's name, as archives store it and `REGISTRY` lists it.
    Config : type
        Its settings: a frozen dataclass deriving from `JsonSettings`. Each field offered on the command line
        and in the Slicer panel carries metadata made by `setting` (flag, help text, bounds or choices).
    EXACT : bool
        True when the codec bounds every voxel's error: bit-exact, unless a slice entry's "max_error" E (a
        near-lossless archive) allows ±E (`pipeline.max_error` reads the archive's bound). The manifest then
        stores the SHA-256 of every slice's decoded voxels.
    MEMBERS : str
        What a member serves: "slice" (each slice its own, or none), "slab" (a run of consecutive slices, the
        member stored with its first; the codec's `check_slices` checks the runs) or "volume" (one member,
        stored with slice 0, serves every slice: each entry names it).
    RATE_CONTROL : frozenset of str
        The rate targets it supports, from `RATE_TARGETS`: "ratio" needs the hook `member_bytes` (network
        codecs: `rate` sizes the network) or `settings_for_bytes(volume, config, budget) -> Config` (a codec
        that searches its own settings); "psnr" needs `psnr_probe` or `settings_for_psnr(volume, config, psnr)`.
        A codec with `psnr_probe` may name in `COARSER` a Config field whose increase costs PSNR and saves bytes
        outside the network: rate control raises it when even the smallest network passes a PSNR target.
    PRESETS : dict of str to Config
        Named settings (may be empty); `DEFAULT_PRESET` names the one `default_config` returns, or is None.

    Notes
    -----
    A codec may also provide `decode_slices(config, entries, members, shape) -> list of ndarray`, which decodes
    several slices at once (as many `decode_slice` calls would); `pipeline.decoded_slices` then uses it.
    """

    NAME: str
    Config: type
    EXACT: bool
    MEMBERS: str
    RATE_CONTROL: frozenset[str]
    PRESETS: dict
    DEFAULT_PRESET: str | None

    def default_config(self) -> Any:
        """The settings used when none are given.

        Returns
        -------
        Config
        """

    def configure(self, base, given: dict) -> Any:
        """The settings `base` with `given` on top (a codec may adjust what depends on them).

        Parameters
        ----------
        base : Config
            A preset or the default settings.
        given : dict
            Config field name → value, of the fields' JSON types.

        Returns
        -------
        Config

        Raises
        ------
        InputError
            For a setting out of its bounds.
        """

    def preferred(self, has_gradients: bool, volumes: int, diffusion_like: bool) -> bool:
        """Whether this codec is the one to suggest for such an input (over `DEFAULT`).

        Parameters
        ----------
        has_gradients : bool
            The input has a diffusion gradient table.
        volumes : int
            Its number of volumes (frames, measurements).
        diffusion_like : bool
            Something (a file name, a header) hints at diffusion data without gradients.

        Returns
        -------
        bool
        """

    def encode(self, volume, config, progress: Callable[[dict], None] | None = None) -> list[EncodedSlice]:
        """Code every axial slice of a `Volume4D` (may import torch).

        Parameters
        ----------
        volume : Volume4D
            The data, (x, y, z, volumes), with its gradients when it has them.
        config : Config
        progress : callable or None
            Receives progress events (dicts with "event": "start", "epoch", "slice").

        Returns
        -------
        list of EncodedSlice
            One per axial slice, in order.
        """

    def placeholders(self, volume, config) -> list[EncodedSlice]:
        """The entries `encode` makes, with empty members (for rate control).

        Parameters
        ----------
        volume : Volume4D
        config : Config

        Returns
        -------
        list of EncodedSlice
        """

    def check_slices(self, config, manifest: dict) -> int:
        """Check the codec's own fields of every slice entry (the codec-independent ones are checked already).

        Parameters
        ----------
        config : Config
        manifest : dict
            The archive's manifest, "shape" (x, y, z, volumes) and "slices" among its keys.

        Returns
        -------
        int
            The decoding work, about one unit per multiply-add (a shared member's model counted once).

        Raises
        ------
        ArchiveError
            Unless every entry is valid and its settings fit in the members' bytes.
        """

    def decode_slice(self, config, entry: dict, member: bytes | None, shape: tuple[int, ...]) -> np.ndarray:
        """Decode one slice, with numpy only.

        Parameters
        ----------
        config : Config
        entry : dict
            The slice's manifest entry.
        member : bytes or None
            The member it names (which may serve other slices too: see `MEMBERS`).
        shape : tuple of int
            The volume's shape (x, y, z, volumes).

        Returns
        -------
        ndarray, shape (x, y, volumes)
            Float, or the data's own dtype for an exact codec.

        Raises
        ------
        ArchiveError
            For a corrupt member or entry.
        """


def setting(default, flag: str, help: str, *, min: float | None = None, max: float | None = None,
            above: float | None = None, choices: tuple | None = None, metavar: str | None = None):
    """A `Config` field offered as a command-line flag and a panel widget.

    Parameters
    ----------
    default
        The field's default.
    flag : str
        Its command-line flag, e.g. "--units".
    help : str
        One line for `--help` and the panel's tooltip.
    min, max : float or None
        Inclusive bounds of a number.
    above : float or None
        Exclusive lower bound of a number.
    choices : tuple or None
        The allowed values.
    metavar : str or None
        The value's name in `--help`.

    Returns
    -------
    dataclasses.Field
    """
    meta = {"flag": flag, "help": help, "min": min, "max": max, "above": above, "choices": choices,
            "metavar": metavar}
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


class JsonSettings:
    """Base of every codec's frozen settings dataclass: bounds checks from the fields' `setting` metadata,
    and `to_json` / `from_json` as the manifest stores the settings."""

    def __post_init__(self) -> None:
        """`InputError` unless every field is finite and within its metadata's bounds and choices."""
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            label = f.name.replace("_", " ")
            if "choices" in meta and value not in meta["choices"]:
                raise InputError(f"{label} must be one of {', '.join(map(str, meta['choices']))}, not {value!r}")
            if value is None or isinstance(value, (bool, str)):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"{label} must be finite")
            if "min" in meta and value < meta["min"] or "max" in meta and value > meta["max"]:
                raise InputError(f"{label} must be {_range(meta)}, not {value!r}")
            if "above" in meta and not value > meta["above"]:
                raise InputError(f"{label} must be above {meta['above']:g}, not {value!r}")

    def to_json(self) -> dict:
        """The settings as the manifest stores them.

        Returns
        -------
        dict
            Field name → JSON value.
        """
        return asdict(self)

    def summary(self) -> str:
        """The flagged settings that differ from the class defaults, in words.

        Returns
        -------
        str
            E.g. "units 96, weight bits 8, basis 24"; "defaults" when none differs.
        """
        words = []
        for f in fields(self):
            value = getattr(self, f.name)
            if "flag" in f.metadata and value != f.default:
                words.append(f"{f.name.replace('_', ' ')} {format(value, 'g') if isinstance(value, float) else value}")
        return ", ".join(words) or "defaults"

    @classmethod
    def from_json(cls, d: dict):
        """The settings from the manifest: known keys only (absent keys take their defaults), each of its field's
        JSON type (finite numbers), within its bounds.

        Parameters
        ----------
        d : dict

        Returns
        -------
        Config

        Raises
        ------
        ArchiveError
            For settings that are not valid.
        """
        try:
            return cls(**checked_json(cls, d))
        except InputError as exc:
            raise ArchiveError(f"bad {cls.__module__.rsplit('.', 1)[-1]} settings in the archive: {exc}") from None


def checked_json(config_class: type, d: dict) -> dict:
    """Check settings read from JSON against a settings class.

    Parameters
    ----------
    config_class : type
        A `JsonSettings` dataclass.
    d : dict
        Field name → JSON value.

    Returns
    -------
    dict
        `d` itself.

    Raises
    ------
    InputError
        Naming the first key that is not a field of `config_class` or value not of its field's JSON type.
    """
    hints = typing.get_type_hints(config_class)
    unknown = sorted(set(d) - {f.name for f in fields(config_class)})
    if unknown:
        raise InputError(f"unknown settings: {', '.join(unknown)}")
    for name, value in d.items():
        if not _json_fits(hints[name], value):
            raise InputError(f"{name} must be {_json_type(hints[name])}, not {value!r}")
    return d


def _json_type(hint) -> str:
    """Words for the JSON values of type `hint`: "an integer", "a finite number or null", ..."""
    words = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", type(None): "null"}
    return " or ".join(words[h] for h in typing.get_args(hint) or (hint,))


def _range(meta: dict) -> str:
    if "min" in meta and "max" in meta:
        return f"{meta['min']:g} to {meta['max']:g}"
    return f"at least {meta['min']:g}" if "min" in meta else f"at most {meta['max']:g}"


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
    """Hex SHA-256 of an array's values: little-endian, C order.

    Parameters
    ----------
    array : ndarray

    Returns
    -------
    str
    """
    return hashlib.sha256(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()).hexdigest()


def get_codec(name: str) -> Codec:
    """The codec module registered as `name`.

    Parameters
    ----------
    name : str
        A key of `REGISTRY`.

    Returns
    -------
    Codec

    Raises
    ------
    InputError
        For a name not registered.
    """
    if name not in REGISTRY:
        raise InputError(f"unknown codec {name!r}; known: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])


def summary(name: str) -> str:
    """A codec's one-line description, for help texts: the first paragraph of its module docstring.

    A codec module's docstring opens with `Codec "NAME": ` and a summary paragraph, which may wrap over
    several lines; the lines are joined with single spaces and the `Codec "NAME": ` prefix is dropped.

    Parameters
    ----------
    name : str
        A key of `REGISTRY`.

    Returns
    -------
    str
        The summary on one line, e.g. "bit-exact coding of integer 4D data (dMRI first), after the lossless
        dMRI paper."; empty when the module has no docstring.

    Raises
    ------
    InputError
        For a name not registered.
    """
    paragraph = (get_codec(name).__doc__ or "").strip().split("\n\n", 1)[0]
    return re.sub(rf'^Codec "{re.escape(name)}":\s*', "", " ".join(paragraph.split()))


def codec_of(config, name: str | None = None) -> str:
    """The registered codec whose `Config` class `config` is an instance of (each codec has its own class).

    Parameters
    ----------
    config : Config
        Settings of some registered codec.
    name : str or None
        The codec the caller means, if it says: checked against `config`.

    Returns
    -------
    str
        A key of `REGISTRY`.

    Raises
    ------
    InputError
        When `config` is no registered codec's settings, or not those of codec `name`.
    """
    found = next((n for n in REGISTRY if type(config) is get_codec(n).Config), None)
    if found is None or name not in (None, found):
        raise InputError(f"{type(config).__module__}.{type(config).__name__} are not the settings of the "
                         f"{name or 'any registered'} codec")
    return found


def suggest(has_gradients: bool, volumes: int, diffusion_like: bool = False) -> str:
    """The codec for an input: the first registered codec whose `preferred` claims it, else `DEFAULT`.

    Parameters
    ----------
    has_gradients : bool
        The input has a diffusion gradient table.
    volumes : int
        Its number of volumes.
    diffusion_like : bool
        Something hints at diffusion data without gradients.

    Returns
    -------
    str
        A key of `REGISTRY`.
    """
    return next((name for name in REGISTRY if get_codec(name).preferred(has_gradients, volumes, diffusion_like)),
                DEFAULT)


def exact_codec() -> str:
    """The first registered codec that is exact (`Codec.EXACT`): the one that codes what must come back bit for
    bit (the 3D volumes and label maps of a scene archive).

    Returns
    -------
    str
    """
    return next(name for name in REGISTRY if get_codec(name).EXACT)


def flagged_fields(name: str) -> list:
    """The `Config` fields of a codec that are offered as flags (made by `setting`), in order.

    Parameters
    ----------
    name : str
        A key of `REGISTRY`.

    Returns
    -------
    list of dataclasses.Field
    """
    return [f for f in fields(get_codec(name).Config) if "flag" in f.metadata]


def setting_type(f) -> type:
    """The Python type of a flagged field's values (`float | None` → float).

    Parameters
    ----------
    f : dataclasses.Field
        A flagged field of a registered codec's `Config`.

    Returns
    -------
    type
        bool, int, float or str.
    """
    hint = typing.get_type_hints(_owner(f))[f.name]
    return next(t for t in (bool, int, float, str) if t is hint or t in typing.get_args(hint))


def _owner(f):
    """The Config class that declares field `f`."""
    return next(get_codec(n).Config for n in REGISTRY if f in fields(get_codec(n).Config))


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add every registered codec's setting flags to an argparse parser.

    A flag that several codecs use goes in one group of shared settings, its help naming the codecs (and
    giving each codec's own text where they differ); each codec's group holds its other flags and names the
    shared ones it takes. Each flag's dest is its field name and its default None (not given).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    users: dict[str, list] = {}  # field name → [(codec, field)] in registry order
    for name in REGISTRY:
        for f in flagged_fields(name):
            users.setdefault(f.name, []).append((name, f))
    shared = {k: v for k, v in users.items() if len(v) > 1}
    if shared:
        group = parser.add_argument_group("settings of several codecs")
        for pairs in shared.values():
            _add_flag(group, [f for _, f in pairs], _shared_help(pairs))
    for name in REGISTRY:
        own = flagged_fields(name)
        also = [f.metadata["flag"] for f in own if f.name in shared]
        group = parser.add_argument_group(f"{name} codec settings",
                                          f"also {', '.join(also)} (settings of several codecs)" if also else None)
        for f in own:
            if f.name not in shared:
                _add_flag(group, [f], f.metadata["help"])


def _shared_help(pairs: list) -> str:
    """Help of a flag several codecs use: "[codecs] help" per distinct help text, joined by "; "."""
    texts: dict[str, list[str]] = {}
    for name, f in pairs:
        texts.setdefault(f.metadata["help"], []).append(name)
    return "; ".join(f"[{', '.join(names)}] {text}" for text, names in texts.items())


def _add_flag(group, same: list, help: str) -> None:
    """One flag for the same-named fields `same` of one or more codecs (its choices: those of any)."""
    f = same[0]
    kind, meta = setting_type(f), f.metadata
    choices = tuple(dict.fromkeys(c for g in same for c in g.metadata.get("choices", ())))
    extra = {"action": "store_true"} if kind is bool else \
        {"choices": choices} if choices and kind is str else \
        {"type": kind, "metavar": meta.get("metavar")}
    group.add_argument(meta["flag"], dest=f.name, default=None, help=help, **extra)


def given_settings(args) -> dict:
    """The codec settings given on a command line parsed with `add_flags`.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    dict
        Field name → value, for the flags given.
    """
    return {k: getattr(args, k) for k in sorted(setting_names()) if getattr(args, k, None) is not None}


def parse_setting(name: str, text: str):
    """The value of a codec setting from text: a number, a choice, or for a switch true/yes/false/no.

    Parameters
    ----------
    name : str
        A flagged field of any registered codec.
    text : str

    Returns
    -------
    bool, int, float or str

    Raises
    ------
    InputError
        For text that is not such a value.
    """
    f = next(f for n in REGISTRY for f in flagged_fields(n) if f.name == name)
    kind = setting_type(f)
    if kind is bool:
        if text.lower() not in ("true", "yes", "false", "no"):
            raise InputError(f"{f.metadata['flag']} takes {_json_type(bool)}, not {text!r}")
        return text.lower() in ("true", "yes")
    try:
        return kind(text)
    except ValueError:
        raise InputError(f"{f.metadata['flag']} takes {_json_type(kind)}, not {text!r}") from None


def setting_names() -> set[str]:
    """The names of every registered codec's flagged settings.

    Returns
    -------
    set of str
    """
    return {f.name for n in REGISTRY for f in flagged_fields(n)}


def configure(name: str, given: dict, preset: str | None = None):
    """Codec `name`'s settings: its preset (or default settings) with `given` on top.

    Parameters
    ----------
    name : str
        A key of `REGISTRY`.
    given : dict
        Config field name → value.
    preset : str or None
        A preset of the codec (None: its default).

    Returns
    -------
    Config

    Raises
    ------
    InputError
        For a setting the codec does not have (naming its flag), an unknown preset or a value out of bounds.
    """
    module = get_codec(name)
    own = {f.name for f in fields(module.Config)}
    wrong = [k for k in given if k not in own]
    if wrong:
        flag = next((f.metadata["flag"] for n in REGISTRY for f in flagged_fields(n) if f.name == wrong[0]),
                    wrong[0])
        owners = [n for n in REGISTRY if wrong[0] in {f.name for f in flagged_fields(n)}]
        hint = f" (it is a setting of {' and '.join(owners)}: name the codec, e.g. --codec {owners[0]})" \
            if owners else ""
        raise InputError(f"{flag} does not apply to the {name} codec{hint}")
    if preset is not None and preset not in module.PRESETS:
        known = ", ".join(sorted(module.PRESETS)) or "none"
        raise InputError(f"the {name} codec has no preset {preset!r} (its presets: {known})")
    base = module.PRESETS[preset] if preset is not None else module.default_config()
    return module.configure(base, checked_json(module.Config, given))


def settings_document(codec: str | None, given: dict, preset: str | None = None) -> str:
    """The JSON that `compress --config-json` reads. Shared by `jobs` and `batch`.

    Parameters
    ----------
    codec : str or None
        A key of `REGISTRY`; None: the codec suggested for the input.
    given : dict
        Config field name → value.
    preset : str or None
        A preset of the codec (None: its default).

    Returns
    -------
    str
    """
    return json.dumps({"codec": codec, "preset": preset, "config": given})


def read_settings_document(text: str) -> tuple[str | None, str | None, dict]:
    """The settings from `settings_document`'s JSON.

    Parameters
    ----------
    text : str

    Returns
    -------
    codec : str or None
    preset : str or None
    config : dict

    Raises
    ------
    InputError
        For JSON that is not such a document.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"the settings are not JSON: {exc}") from None
    if not isinstance(doc, dict) or set(doc) - {"codec", "preset", "config"} or \
            not isinstance(doc.get("config", {}), dict) or \
            not all(isinstance(doc.get(k), (str, type(None))) for k in ("codec", "preset")):
        raise InputError('the settings must be a JSON object {"codec": NAME, "preset": NAME, "config": {...}}')
    return doc.get("codec"), doc.get("preset"), doc.get("config", {})
