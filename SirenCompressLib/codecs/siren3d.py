"""Codec "siren3d": the paper's SIREN-3D variant, one network for the whole volume, (x, y, z) → V values.

Same settings, weights and member bytes as codec "siren" (see siren.py); the network has three inputs.
The member is stored once, with the first slice; every slice entry names it and carries the per-volume
normalisation of the whole volume. Decoding a slice evaluates the network on that slice's grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ArchiveError
from ..network import grid
from ..progress import Clock
from ..volume import Volume4D
from . import EncodedSlice, siren
from .siren import (
    DEFAULT_PRESET,
    Progress,
    check_entry,
    configure,
    decode_network,
    fit_networks,
    layer_shapes,
    network_params,
    preferred,
    slice_entry,
    volume_span,
)
from .siren import (
    member_bytes as _siren_member_bytes,
)

__all__ = ["DEFAULT_PRESET", "EXACT", "MEMBERS", "NAME", "PRESETS", "RATE_CONTROL", "Config", "check_slices",
           "configure", "decode_slice", "default_config", "encode", "member_bytes", "placeholders", "preferred",
           "psnr_probe"]
NAME = "siren3d"
MEMBERS = "volume"
EXACT = False
RATE_CONTROL = frozenset({"ratio", "psnr"})


@dataclass(frozen=True)
class Config(siren.Config):
    """Settings of the siren3d codec: those of the siren codec, in a class of its own (a Config names its
    codec)."""


PRESETS = {name: Config(**preset.to_json()) for name, preset in siren.PRESETS.items()}


def default_config() -> Config:
    """The settings used when none are given: the DEFAULT_PRESET.

    Returns
    -------
    Config
    """
    return PRESETS[DEFAULT_PRESET]


def member_bytes(volume: Volume4D, config: Config) -> Callable[[int], int]:
    """Rate control's hook for a ratio target.

    Parameters
    ----------
    volume : Volume4D
    config : Config

    Returns
    -------
    callable
        Units per layer → bytes of the (x, y, z) network's member.
    """
    return _siren_member_bytes(volume, config, n_in=3)


def psnr_probe(volume: Volume4D, config: Config) -> Callable[[Config], tuple[float, int]] | None:
    """Rate control's hook for a PSNR target: each trial trains the whole network, as `encode` does (one trial
    costs one encode), stopping once its stored weights reach the trial's `target_psnr`.

    Parameters
    ----------
    volume : Volume4D
    config : Config

    Returns
    -------
    callable or None
        Trial settings → (PSNR in dB of the stored weights, member bytes); None for a constant volume.
    """
    [first, *_] = placeholders(volume, config)
    if first.member is None:
        return None
    nx, ny, nz, nv = volume.shape

    def probe(trial: Config) -> tuple[float, int]:
        [(member, reached)] = fit_networks(grid(nx, ny, nz), [volume.data.reshape(-1, nv)], [first.entry],
                                           volume_span(volume.data), trial, [trial.seed])
        return reached, len(member)

    return probe


def encode(volume: Volume4D, config: Config, progress: Progress | None = None) -> list[EncodedSlice]:
    """Train one network on every voxel of the volume (imports torch).

    Parameters
    ----------
    volume : Volume4D
        The data, (x, y, z, volumes).
    config : Config
    progress : callable or None
        Receives progress events (dicts).

    Returns
    -------
    list of EncodedSlice
        One per axial slice; the member is stored with the first.
    """
    from ..nets import pick_device, use_bf16

    data = volume.data
    entries = placeholders(volume, config)
    nx, ny, nz, nv = data.shape
    emit = progress or (lambda event: None)
    if entries[0].member is None:  # a constant volume
        return entries
    device = pick_device(config.device)
    epochs = config.epochs + config.qat_epochs
    clock = Clock(epochs)
    emit({"event": "start", "slices": nz, "networks": 1, "epochs": epochs,
          "device": str(device) + (" (bf16)" if use_bf16(config.precision, device) else "")})

    def report(epoch: int, loss: float, psnr: float) -> None:
        clock.update(epoch)
        emit({"event": "epoch", "slice": 0, "slices": nz, "epoch": epoch, "epochs": epochs, "loss": loss,
              "psnr": psnr, "eta_s": clock.eta()})

    [(entries[0].member, _)] = fit_networks(grid(nx, ny, nz), [data.reshape(-1, nv)], [entries[0].entry],
                                            volume_span(data), config, [config.seed], report)
    emit({"event": "slice", "slice": 0, "slices": nz, "kind": "network", "bytes": len(entries[0].member)})
    return entries


def placeholders(volume: Volume4D, config: Config) -> list[EncodedSlice]:
    """The slice entries `encode` makes: all constant for a constant volume, else the whole volume's
    normalisation in every entry and one (here empty) member with the first slice.

    Parameters
    ----------
    volume : Volume4D
    config : Config

    Returns
    -------
    list of EncodedSlice
    """
    data = volume.data
    whole = slice_entry(data)
    if whole.entry["kind"] == "constant":
        return [EncodedSlice(dict(whole.entry)) for _ in range(data.shape[2])]
    return [EncodedSlice(dict(whole.entry), b"" if z == 0 else None, None if z == 0 else 0)
            for z in range(data.shape[2])]


def check_slices(config: Config, manifest: dict) -> int:
    """Check the slice entries: all constant, or all network entries with slice 0's member holding the network.

    Parameters
    ----------
    config : Config
    manifest : dict

    Returns
    -------
    int
        The work of evaluating the network at every voxel (multiply-adds).

    Raises
    ------
    ArchiveError
        For an invalid entry.
    """
    nx, ny, nz, nv = manifest["shape"]
    slices = manifest["slices"]
    kinds = {check_entry(entry, nv) for entry in slices}
    if kinds == {"constant"}:
        return 0
    if kinds != {"network"}:
        raise ArchiveError("siren3d slices must be all constant or all network")
    return nx * ny * nz * network_params(layer_shapes(config, nv, 3), slices[0])


def decode_slice(config: Config, entry: dict, member: bytes | None, shape: tuple[int, ...]) -> np.ndarray:
    """Decode the slice at the entry's index (numpy only).

    Parameters
    ----------
    config : Config
    entry : dict
    member : bytes or None
        The shared member.
    shape : tuple of int
        The volume's shape (x, y, z, volumes).

    Returns
    -------
    ndarray, shape (x, y, volumes)
        float64.
    """
    nx, ny, nz, nv = shape
    if entry.get("kind") == "constant":
        return np.full((nx, ny, nv), float(entry["value"]))
    z = np.float32(np.linspace(-1.0, 1.0, nz)[int(entry["index"])])
    coords = np.column_stack([grid(nx, ny), np.full(nx * ny, z, dtype=np.float32)])  # = grid(nx, ny, nz) at z
    return decode_network(config, entry, member, coords, nv).reshape(nx, ny, nv)
