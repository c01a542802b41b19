"""Rate control: settings that meet a compression ratio, a PSNR or an added noise on a given volume, for the
codecs whose `RATE_CONTROL` names what that target needs (through their hooks `member_bytes` and `psnr_probe`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from .codecs import REGISTRY, EncodedSlice, JsonSettings, get_codec
from .errors import InputError
from .noise import NoiseEstimate
from .volume import Volume4D

TYPICAL_METHOD = ("Marchenko–Pastur PCA (Veraart et al. 2016) in 21×21-voxel blocks of each slice, Koay–Basser "
                  "Rician correction")  # as `compress` records it: its length counts in the container

_Settings = TypeVar("_Settings", bound=JsonSettings)  # a codec's Config; the functions return the same class

UNITS_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
INTEGER_BITS = (8, 6)  # bit depths tried for integer weights
# Rate target (the compress flag --target-NAME) → the `RATE_CONTROL` entry it needs, and its name in messages.
# An added-noise target is a PSNR target once the noise σ is known (`config_for_noise`).
TARGETS = {"ratio": "ratio", "psnr": "psnr", "noise": "psnr"}
TARGET_WORDS = {"ratio": "a compression ratio", "psnr": "a PSNR", "noise": "an added noise level"}


def supports(codec: str, target: str) -> None:
    """Check that a codec can aim at a rate target.

    Parameters
    ----------
    codec : str
        A key of `codecs.REGISTRY`.
    target : str
        A key of `TARGETS`: "ratio", "psnr" or "noise".

    Raises
    ------
    InputError
        Unless the codec's `RATE_CONTROL` has what `target` needs (the message names the codecs that can).
    """
    needs = TARGETS[target]
    if needs not in get_codec(codec).RATE_CONTROL:
        able = [name for name in REGISTRY if needs in get_codec(name).RATE_CONTROL]
        exact = "; it is exact: it adds no error" if get_codec(codec).EXACT else ""
        raise InputError(f"the {codec} codec cannot aim at {TARGET_WORDS[target]} (codecs that can: "
                         f"{', '.join(able) or 'none'}){exact}")


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


COARSER_TRIALS = 6  # the most trials of a codec's `COARSER` setting once the smallest network passes the target


@dataclass
class Probe:
    """One trial network on the probe slice (and the value of the codec's `COARSER` setting, where tried)."""

    units: int
    weight_bits: int
    psnr: float
    bytes: int
    coarser: str = ""

    def describe(self, layers: int) -> str:
        """One line for the log, e.g. "3×64 8-bit: 31.20 dB, 4,096 B"."""
        setting = f" {self.coarser}" if self.coarser else ""
        return f"{layers}×{self.units} {self.weight_bits}-bit{setting}: {self.psnr:.2f} dB, {self.bytes:,} B"


def config_for_psnr(config: _Settings, volume: Volume4D, psnr: float, codec: str, units: bool = True,
                    bits: bool = True, report: Callable[[Probe], None] | None = None) -> tuple[_Settings, list[Probe]]:
    """The smallest network (units, and bit depth for integer weights) whose probe slice reaches a PSNR, with
    training stopping early at that PSNR (which chooses the epochs, slice by slice).

    For each bit depth (8 and 6 for integer weights, unless `bits` is False; config.weight_bits otherwise) a
    bisection over UNITS_LADDER (config.units only, if `units` is False) finds the fewest units that reach the
    target within the epochs, trained by the codec's `psnr_probe` hook; the candidate with the fewest bytes
    wins. If nothing reaches it, the probe with the highest PSNR wins. A codec whose `Config` has no
    `target_psnr` trains to its epochs: its PSNR lands at or above the target, by up to a rung of the ladder.
    When even the fewest units pass the target and the codec names a `COARSER` setting (one whose increase costs
    PSNR and saves bytes outside the network, e.g. a quantiser's step), that setting is raised to meet the
    target (`_coarsened`).

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
    aim = {"target_psnr": psnr} if hasattr(config, "target_psnr") else {}  # training that stops at the target
    trial_of = module.psnr_probe(volume, config)
    if trial_of is None:
        return replace(config, **aim), []
    probes: list[Probe] = []

    def probe(n_units: int, n_bits: int) -> Probe:
        reached, nbytes = trial_of(replace(config, units=n_units, weight_bits=n_bits, **aim))
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
    chosen = replace(config, units=best.units, weight_bits=best.weight_bits, **aim)
    coarser = getattr(module, "COARSER", None)
    if coarser and best.psnr > psnr and best.units == ladder[0]:
        chosen = _coarsened(chosen, best, psnr, coarser, trial_of, probes, report)
    return chosen, probes


def _coarsened(config: _Settings, passed: Probe, psnr: float, name: str, trial_of, probes: list[Probe],
               report: Callable[[Probe], None] | None) -> _Settings:
    """`config` with the setting `name` raised as far as the PSNR stays at or above `psnr` (within 5 % of the
    target's MSE), in at most COARSER_TRIALS trials; `passed` is `config`'s own trial.

    Until a trial misses the target: a secant step on the setting squared against the MSE (a quantiser adds
    step²/12), or ×1.5 where the MSE did not grow. Then: regula falsi between the highest setting that passed
    and the lowest that missed, on the logarithm of the MSE (the error need not grow as step², nor even
    monotonically), kept within the middle 80 % of that bracket.
    """
    target = 10 ** (-psnr / 10)
    known = [(float(getattr(config, name)), 10 ** (-passed.psnr / 10))]  # (setting, MSE) of every trial
    best, value = config, 2 * known[0][0]
    for _ in range(COARSER_TRIALS):
        trial = replace(config, **{name: value})
        reached, nbytes = trial_of(trial)
        probes.append(Probe(config.units, config.weight_bits, reached, nbytes, f"{name} {value:.4g}"))
        if report is not None:
            report(probes[-1])
        mse = 10 ** (-reached / 10)
        known.append((value, mse))
        if mse <= target and value > getattr(best, name):
            best = trial
            if mse >= 0.95 * target:
                break
        missed = [(v, m) for v, m in known if m > target]
        if missed:
            (low, m_low), (high, m_high) = max((v, m) for v, m in known if m <= target), min(missed)
            share = math.log(0.98 * target / m_low) / math.log(m_high / m_low)
            value = low + min(max(share, 0.1), 0.9) * (high - low)
        else:
            (v0, m0), (v1, m1) = known[-2:]
            slope = (m1 - m0) / (v1 ** 2 - v0 ** 2)
            if slope > 0:
                value = min(max(v1 ** 2 + (0.98 * target - m1) / slope, v1 ** 2) ** 0.5, 4 * v1)
            else:  # the MSE did not grow (a trained model's error is noisy): a fixed step up
                value = 1.5 * max(v1, v0)
    return best


def config_for_noise(config: _Settings, volume: Volume4D, fraction: float, codec: str, noise: NoiseEstimate,
                     units: bool = True, bits: bool = True,
                     report: Callable[[Probe], None] | None = None) -> tuple[_Settings, list[Probe], float]:
    """The settings of the highest compression ratio whose added error D stays within `fraction`·σ²: the PSNR
    target at which D = fraction·σ² (`NoiseBound.psnr_at_fraction`), met by `config_for_psnr`.

    Parameters
    ----------
    config : Config
        The codec's settings.
    volume : Volume4D
    fraction : float
        The most D / σ², positive (0.1: the codec adds a tenth of the noise variance, an SNR loss of 4.7 %).
    codec : str
        A codec whose `RATE_CONTROL` has "psnr".
    noise : NoiseEstimate
        The noise of `volume` (`estimate_noise`).
    units, bits, report
        As `config_for_psnr`.

    Returns
    -------
    (Config, list of Probe, float)
        The settings, every probe made, and the PSNR aimed at (dB).

    Raises
    ------
    InputError
        When the codec cannot aim at a PSNR, or `fraction` is not positive.
    """
    supports(codec, "noise")
    if not fraction > 0:
        raise InputError("the target noise fraction must be positive")
    psnr = noise.bound.psnr_at_fraction(fraction)
    return (*config_for_psnr(config, volume, psnr, codec, units, bits, report), psnr)


def _container_bytes(volume, codec: str, config, placeholders: list[EncodedSlice]) -> int:
    """Bytes of the archive around the network members: zip structure and deflated manifest, with
    metrics and (for a lossy codec) the noise estimate of typical length."""
    from .archive import NOISE_METHOD, NOISE_SIGMA, to_bytes
    from .pipeline import assemble

    noise = {} if get_codec(codec).EXACT else {NOISE_SIGMA: 12.345678901234567, NOISE_METHOD: TYPICAL_METHOD}
    archive = assemble(volume, codec, config, placeholders, noise)
    rng = np.random.default_rng(0)  # each slice's metrics differ in every digit: deflate shares none of them

    def typical() -> dict:
        return {"mse": 1e-5 * (1 + rng.random()), "psnr": 49 + rng.random(), "ssim": 0.99 + 0.01 * rng.random()}

    for entry in archive.manifest["slices"]:
        entry["metrics"] = typical()
    archive.manifest["metrics"] = typical()
    return len(to_bytes(archive))
