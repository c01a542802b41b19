"""Rate control for the network codecs: settings that meet a compression ratio (siren, siren3d, fmri) or a PSNR
(siren) on a given volume."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .codecs import EncodedSlice, get_codec
from .codecs.siren import Config, encode_slice, pack_weights, volume_span
from .errors import InputError

UNITS_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
INTEGER_BITS = (8, 6)  # bit depths tried for integer weights


def config_for_ratio(config, volume, ratio: float, codec: str = "siren"):
    """`config` with the most units whose archive of `volume` by `codec` ("siren", "siren3d" or "fmri")
    meets compression ratio `ratio` (raw 16-bit bytes over archive bytes). Network sizes are measured by
    coding freshly initialised networks, whose weights code to nearly the same size as trained ones (for
    fmri with its real mean frame and ICA patterns); the container is measured on a stand-in."""
    import torch

    from .nets import Siren

    nx, ny, nz, nv = volume.shape
    module = get_codec(codec)
    placeholders = module.placeholders(volume, config)
    networks = sum(item.member is not None for item in placeholders)
    target = nx * ny * nz * nv * 2 / ratio
    budget = (target - _container_bytes(volume, codec, config, placeholders)) / max(networks, 1)
    n_in = 3 if codec == "siren3d" else 2

    def siren_bytes(units: int) -> int:
        torch.manual_seed(config.seed)
        model = Siren(n_in, nv, config.layers, units, config.w0, config.final_activation, config.basis,
                      config.activation)
        return len(pack_weights([p.detach().numpy() for p in model.parameters()], config.weight_bits,
                                config.coder))

    network_bytes = module.member_bytes(volume, config) if codec == "fmri" else siren_bytes

    lo, hi = 2, 2048
    if network_bytes(lo) > budget:
        raise InputError(f"compression ratio {ratio:g} is out of reach for {config.layers} layers at "
                         f"{config.weight_bits}-bit weights: use fewer layers, fewer bits or a lower ratio")
    while lo < hi:
        middle = (lo + hi + 1) // 2
        lo, hi = (middle, hi) if network_bytes(middle) <= budget else (lo, middle - 1)
    return type(config)(**{**config.to_json(), "units": lo})


@dataclass
class Probe:
    """One trial network on the probe slice."""

    units: int
    weight_bits: int
    psnr: float
    bytes: int

    def describe(self, layers: int) -> str:
        return f"{layers}×{self.units} {self.weight_bits}-bit: {self.psnr:.2f} dB, {self.bytes:,} B"


def config_for_psnr(config: Config, volume, psnr: float, units: bool = True, bits: bool = True,
                    report: Callable[[Probe], None] | None = None) -> tuple[Config, list[Probe]]:
    """The smallest network (units, and bit depth for integer weights) whose probe slice reaches `psnr` dB,
    with training stopping early at `psnr` (that chooses the epochs, slice by slice).

    The probe slice is the middle one of the slices that need a network. For each bit depth (8 and 6 for
    integer weights, unless `bits` is False; config.weight_bits otherwise) a bisection over UNITS_LADDER
    (config.units only, if `units` is False) finds the fewest units that reach the target within the epochs;
    the candidate with the fewest bytes wins. If nothing reaches it, the probe with the highest PSNR wins.
    Returns the settings and every probe made.
    """
    if not psnr > 0:
        raise InputError("the target PSNR must be positive")
    data = volume.data
    slices = [z for z in range(data.shape[2]) if np.ptp(data[:, :, z]) > 0]
    if not slices:
        return Config(**{**config.to_json(), "target_psnr": psnr}), []
    z = slices[len(slices) // 2]
    span = volume_span(data)
    probes: list[Probe] = []

    def probe(n_units: int, n_bits: int) -> Probe:
        trial = Config(**{**config.to_json(), "units": n_units, "weight_bits": n_bits, "target_psnr": psnr})
        item, reached = encode_slice(data[:, :, z], span, trial, config.seed + z)
        probes.append(Probe(n_units, n_bits, reached, len(item.member)))
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
    return Config(**{**config.to_json(), "units": best.units, "weight_bits": best.weight_bits,
                     "target_psnr": psnr}), probes


def _container_bytes(volume, codec: str, config: Config, placeholders: list[EncodedSlice]) -> int:
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
