"""Rate control: settings that meet a compression ratio or a PSNR on a given volume, for the codecs whose
`RATE_CONTROL` names that target (through their hooks `member_bytes` and `psnr_probe`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from .codecs import REGISTRY, EncodedSlice, JsonSettings, get_codec
from .errors import InputError
from .volume import Volume4D

_Settings = TypeVar("_Settings", bound=JsonSettings)  # a codec's Config; the functions return the same class

UNITS_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
INTEGER_BITS = (8, 6)  # bit depths tried for integer weights


def supports(codec: str, target: str) -> None:
    """Check that a codec can aim at a rate target.

    Parameters
    ----------
    codec : str
        A key of `codecs.REGISTRY`.
    target : str
        "ratio" or "psnr".

    Raises
    ------
    InputError
        Unless the codec's `RATE_CONTROL` has `target` (the message names the codecs that can).
    """
    if target not in get_codec(codec).RATE_CONTROL:
        able = [name for name in REGISTRY if target in get_codec(name).RATE_CONTROL]
        raise InputError(f"the {codec} codec cannot aim at a {'PSNR' if target == 'psnr' else 'compression ratio'}"
                         f" (codecs that can: {', '.join(able) or 'none'})")


def config_for_ratio(config: _Settings, volume: Volume4D, ratio: float, codec: str) -> _Settings:
    """The settings whose archive meets a compression ratio: the most units per layer for a network codec, or
    what the codec's own `settings_for_bytes` hook finds.

    Network sizes come from the codec's `member_bytes` hook (freshly initialised networks code to nearly the
    size of trained ones); the container is measured on a stand-in.

    Parameters
    ----------
    config : Config
        The codec's settings; only `units` changes.
    volume : Volume4D
        The data, (x, y, z, volumes).
    ratio : float
        Raw 16-bit bytes over archive bytes.
    codec : str
        A codec whose `RATE_CONTROL` has "ratio".

    Returns
    -------
    Config

    Raises
    ------
    InputError
        When the codec cannot aim at a ratio, or even 2 units per layer miss it.
    """
    supports(codec, "ratio")
    nx, ny, nz, nv = volume.shape
    module = get_codec(codec)
    placeholders = module.placeholders(volume, config)
    if hasattr(module, "settings_for_bytes"):  # a codec that searches its own settings
        target = nx * ny * nz * nv * 2 / ratio
        return module.settings_for_bytes(volume, config, int(target - _container_bytes(volume, codec, config,
                                                                                           placeholders)))
    networks = sum(item.member is not None for item in placeholders)
    target = nx * ny * nz * nv * 2 / ratio
    budget = (target - _container_bytes(volume, codec, config, placeholders)) / max(networks, 1)
    network_bytes = module.member_bytes(volume, config)

    lo, hi = 2, 2048
    if network_bytes(lo) > budget:
        raise InputError(f"compression ratio {ratio:g} is out of reach for {config.layers} layers at "
                         f"{config.weight_bits}-bit weights: use fewer layers, fewer bits or a lower ratio")
    while lo < hi:
        middle = (lo + hi + 1) // 2
        lo, hi = (middle, hi) if network_bytes(middle) <= budget else (lo, middle - 1)
    return replace(config, units=lo)


@dataclass
class Probe:
    """One trial network on the probe slice."""

    units: int
    weight_bits: int
    psnr: float
    bytes: int

    def describe(self, layers: int) -> str:
        """One line for the log, e.g. "3×64 8-bit: 31.20 dB, 4,096 B"."""
        return f"{layers}×{self.units} {self.weight_bits}-bit: {self.psnr:.2f} dB, {self.bytes:,} B"


def config_for_psnr(config: _Settings, volume: Volume4D, psnr: float, codec: str, units: bool = True,
                    bits: bool = True, report: Callable[[Probe], None] | None = None) -> tuple[_Settings, list[Probe]]:
    """The smallest network (units, and bit depth for integer weights) whose probe slice reaches a PSNR, with
    training stopping early at that PSNR (which chooses the epochs, slice by slice).

    For each bit depth (8 and 6 for integer weights, unless `bits` is False; config.weight_bits otherwise) a
    bisection over UNITS_LADDER (config.units only, if `units` is False) finds the fewest units that reach the
    target within the epochs, trained by the codec's `psnr_probe` hook; the candidate with the fewest bytes
    wins. If nothing reaches it, the probe with the highest PSNR wins.

    Parameters
    ----------
    config : Config
        The codec's settings.
    volume : Volume4D
    psnr : float
        The target in dB, positive.
    codec : str
        A codec whose `RATE_CONTROL` has "psnr".
    units, bits : bool
        Whether to choose the units per layer, the bit depth.
    report : callable or None
        Receives every `Probe` as it is made.

    Returns
    -------
    (Config, list of Probe)
        The settings and every probe made.

    Raises
    ------
    InputError
        When the codec cannot aim at a PSNR, or the target is not positive.
    """
    supports(codec, "psnr")
    if not psnr > 0:
        raise InputError("the target PSNR must be positive")
    module = get_codec(codec)
    if hasattr(module, "settings_for_psnr"):  # a codec that searches its own settings
        return module.settings_for_psnr(volume, config, psnr), []
    trial_of = module.psnr_probe(volume, config)
    if trial_of is None:
        return replace(config, target_psnr=psnr), []
    probes: list[Probe] = []

    def probe(n_units: int, n_bits: int) -> Probe:
        reached, nbytes = trial_of(replace(config, units=n_units, weight_bits=n_bits, target_psnr=psnr))
        probes.append(Probe(n_units, n_bits, reached, nbytes))
        if report is not None:
            report(probes[-1])
        return probes[-1]

    depths = INTEGER_BITS if bits and config.weight_bits < 16 else (config.weight_bits,)
    ladder = UNITS_LADDER if units else (config.units,)
    winners = []
    for n_bits in depths:
        lo, hi, found = 0, len(ladder) - 1, None
        while lo <= hi:
            middle = (lo + hi) // 2
            trial = probe(ladder[middle], n_bits)
            if trial.psnr >= psnr:
                found, hi = trial, middle - 1
            else:
                lo = middle + 1
        if found is not None:
            winners.append(found)
    best = min(winners, key=lambda p: p.bytes) if winners else max(probes, key=lambda p: p.psnr)
    return replace(config, units=best.units, weight_bits=best.weight_bits, target_psnr=psnr), probes


def _container_bytes(volume, codec: str, config, placeholders: list[EncodedSlice]) -> int:
    """Bytes of the archive around the network members: zip structure and deflated manifest, with
    metrics of typical length."""
    from .archive import to_bytes
    from .pipeline import assemble

    archive = assemble(volume, codec, config, placeholders)
    typical = {"mse": 1.2345678901234567e-05, "psnr": 49.12345678901234, "ssim": 0.9912345678901234}
    for entry in archive.manifest["slices"]:
        entry["metrics"] = typical
    archive.manifest["metrics"] = typical
    return len(to_bytes(archive))
