"""Rate control: a compression ratio or a PSNR target chooses the settings."""

from __future__ import annotations

import pytest

from conftest import FAST, phantom
from SirenCompressLib import SirenConfig, compress
from SirenCompressLib.archive import to_bytes
from SirenCompressLib.codecs import get_codec
from SirenCompressLib.errors import InputError
from SirenCompressLib.rate import config_for_psnr, config_for_ratio


@pytest.mark.parametrize("bits, ratio", [(16, 4.0), (8, 8.0)])
def test_target_ratio_is_met(bits, ratio):
    volume = phantom(shape=(32, 32, 2), directions=30, bvalues=(1000.0,))
    config = config_for_ratio(SirenConfig(layers=2, epochs=30, lr=3e-3, weight_bits=bits, device="cpu"),
                              volume, ratio, "siren")
    reached = volume.data.size * 2 / len(to_bytes(compress(volume, config=config)))
    assert reached == pytest.approx(ratio, rel=0.10)


def test_unreachable_ratio_is_refused():
    with pytest.raises(InputError, match="out of reach"):
        config_for_ratio(SirenConfig(), phantom(), 1000.0, "siren")


def test_target_psnr_stops_early():
    events = []
    config = SirenConfig(**{**FAST.to_json(), "epochs": 2000, "target_psnr": 25.0})
    archive = compress(phantom(), config=config, progress=events.append)
    last = [e["epoch"] for e in events if e["event"] == "epoch" and e["slice"] == 0][-1]
    assert last < 2000
    assert archive.manifest["slices"][0]["metrics"]["psnr"] >= 24.5



@pytest.mark.parametrize("bits", [8, 16])
def test_psnr_target_picks_the_smallest_network_that_reaches_it(bits):
    volume = phantom(shape=(20, 18, 3))
    base = SirenConfig(**{**FAST.to_json(), "epochs": 150, "weight_bits": bits})
    probes = []
    config, made = config_for_psnr(base, volume, 30.0, "siren", report=probes.append)
    assert made == probes and probes
    reached = [p for p in probes if p.psnr >= 30.0]
    chosen = min(reached, key=lambda p: p.bytes)
    assert (config.units, config.weight_bits, config.target_psnr) == (chosen.units, chosen.weight_bits, 30.0)
    assert {p.weight_bits for p in probes} == ({8, 6} if bits == 8 else {16})
    # bisection: every probe with fewer units at the chosen depth missed the target
    assert all(p.psnr < 30.0 for p in probes if p.weight_bits == config.weight_bits and p.units < config.units)
    archive = compress(volume, config=config)
    assert archive.manifest["slices"][1]["metrics"]["psnr"] >= 30.0


def test_lower_psnr_target_gives_a_smaller_network():
    volume = phantom(shape=(20, 18, 3))
    base = SirenConfig(**{**FAST.to_json(), "epochs": 150, "weight_bits": 8})
    low, _ = config_for_psnr(base, volume, 22.0, "siren", bits=False)
    high, _ = config_for_psnr(base, volume, 32.0, "siren", bits=False)
    assert low.units < high.units


def test_unreachable_psnr_takes_the_best_probe():
    base = SirenConfig(**{**FAST.to_json(), "epochs": 20})
    config, probes = config_for_psnr(base, phantom(), 200.0, "siren", bits=False)
    assert config.units == max(probes, key=lambda p: p.psnr).units
    assert all(p.psnr < 200.0 for p in probes)


def test_a_codec_without_the_hook_is_refused():
    with pytest.raises(InputError, match="cannot aim at a PSNR .*siren"):
        config_for_psnr(get_codec("lossless").default_config(), phantom(), 30.0, "lossless")


@pytest.mark.parametrize("model, optimum", [("quadratic", 1.3), ("quadratic", 3.1), ("cubic", 1.7), ("linear", 0.9),
                                            ("steep", 4.0), ("noisy", 4.0)])
def test_a_coarser_setting_is_raised_until_the_added_error_meets_the_target(model, optimum):
    """`_coarsened` on model codecs whose MSE grows with a step: as a quantiser's (quadratic), and as the fmri
    codec's on its phantom (steep: D/σ² 1.03, 1.24, 1.63, 6.84 at mean steps 0.25, 3.02, 3.68, 6.58, measured,
    interpolated in log D). It never passes the target, keeps the best trial that did, takes at most
    COARSER_TRIALS trials, and lands within 5 % of the target MSE where the model is smooth."""
    import dataclasses
    import math

    import numpy as np

    from SirenCompressLib import rate

    @dataclasses.dataclass(frozen=True)
    class Settings:
        units: int = 16
        weight_bits: int = 8
        step: float = 0.25

    growth = {"quadratic": lambda v: 4 * v ** 2, "cubic": lambda v: 4 * v ** 3, "linear": lambda v: 4 * v,
              "steep": lambda v: math.exp(np.interp(v, [0.25, 3.02, 3.68, 6.58, 20], np.log([1.03, 1.24, 1.63, 6.84,
                                                                                            200]))) - 1,
              "noisy": lambda v: 0.1 * v ** 2 + 0.3 * math.sin(7 * v) ** 2}[model]  # not monotone

    def mse(settings: Settings) -> float:
        return 1e-5 * (1 + growth(settings.step))

    def trial_of(settings: Settings) -> tuple[float, int]:
        return -10 * math.log10(mse(settings)), int(1e5 / settings.step)

    psnr = -10 * math.log10(mse(Settings(step=optimum)))
    start = rate.Probe(16, 8, *trial_of(Settings()))
    probes = []
    chosen = rate._coarsened(Settings(), start, psnr, "step", trial_of, probes, None)
    assert mse(chosen) <= mse(Settings(step=optimum)) and len(probes) <= rate.COARSER_TRIALS
    assert chosen.step > Settings().step and all(p.coarser.startswith("step ") for p in probes)
    if model in ("quadratic", "steep"):
        assert mse(chosen) >= 0.95 * mse(Settings(step=optimum))
