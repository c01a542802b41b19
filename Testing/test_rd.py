"""The rate-distortion benchmark machinery, on a tiny phantom with tiny settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import phantom, run_cli
from SirenCompressLib import SirenConfig, Volume4D
from SirenCompressLib.codecs import siren3d
from SirenCompressLib.errors import InputError
from SirenCompressLib.evaluate import rd
from SirenCompressLib.noise import NoiseBound, estimate_sigma


def test_rows_table_plot_and_json(tmp_path):
    volume = phantom(shape=(24, 24, 2), directions=12, bvalues=(1000.0,))
    clean = phantom(shape=(24, 24, 2), directions=12, bvalues=(1000.0,), noise=0.0).data
    tiny = SirenConfig(layers=2, epochs=20, lr=3e-3, weight_bits=8, device="cpu")
    codecs = {"siren tiny": ("siren", tiny), "siren3d tiny": ("siren3d", siren3d.Config(**tiny.to_json()))}
    rows = rd.run(volume, [4.0], codecs, ["JPEG 2000 tiled"], clean, log=lambda line: None)
    assert [r.codec for r in rows] == ["siren tiny", "siren3d tiny", "JPEG 2000 tiled"]
    assert rows[0].settings.startswith("layers 2, units ") and "epochs 20" in rows[0].settings
    for r in rows:
        assert r.ratio == pytest.approx(4.0, rel=0.1) and r.psnr_clean is not None and r.psnr > 20
    bound = NoiseBound(estimate_sigma(volume.data), float(np.ptp(volume.data)))
    table = rd.markdown(rows, clean=True, bound=bound)
    assert table.count("\n") == 6 and "**" in table and "PSNR vs noise-free" in table
    assert f"| 4 | noise bound | 4 | {bound.psnr(4.0):.2f} |" in table
    below, loss = rd.versus_noise(rows[0], bound)
    assert below == pytest.approx(bound.psnr(rows[0].ratio) - rows[0].psnr) and 0 < loss < 100
    assert all(line.count("|") == table.splitlines()[0].count("|") for line in table.splitlines())
    rd.plot(rows, str(tmp_path / "rd.png"), "tiny", bound)
    assert (tmp_path / "rd.png").read_bytes()[:4] == b"\x89PNG"
    rd.to_json(rows, str(tmp_path / "rd.json"), data="tiny")
    assert json.loads((tmp_path / "rd.json").read_text())["rows"][0]["codec"] == "siren tiny"


def test_float_data_is_rounded_and_said_so():
    volume = Volume4D(np.full((4, 4, 1, 2), 1.6, np.float32))
    rounded, was_rounded = rd.integer_volume(volume)
    assert was_rounded and rounded.data.dtype == np.int16 and rounded.data[0, 0, 0, 0] == 2


def test_bench_refuses_input_and_phantom_together(tmp_path, phantom_nifti):
    r = run_cli("bench", phantom_nifti, "--phantom", "-o", tmp_path)
    assert r.returncode == 2 and "not both" in r.stderr


def test_noise_sigma_of_white_noise_on_low_rank_data():
    rng = np.random.default_rng(0)
    signal = 1000 + 300 * np.einsum("xyzk,kv->xyzv", rng.random((40, 40, 3, 4)), rng.random((4, 30)))
    sigma = estimate_sigma(signal + rng.normal(0, 5.0, signal.shape))
    assert sigma == pytest.approx(5.0, rel=0.05)


def test_noise_bound_gains_6_02_db_per_bit():
    bound = NoiseBound(sigma=10.0, data_range=1000.0)
    assert bound.noise_psnr == pytest.approx(40.0)
    assert bound.psnr(16.0) == pytest.approx(46.0206, abs=1e-4)  # 1 bit per voxel
    assert bound.psnr(8.0) - bound.psnr(16.0) == pytest.approx(6.0206, abs=1e-4)


def test_noise_sigma_needs_volumes():
    with pytest.raises(InputError, match="at least 2 volumes"):
        estimate_sigma(np.zeros((4, 4, 1, 1)))


def test_bench_classical_only_with_the_noise_bound(tmp_path):
    r = run_cli("bench", "--phantom", "--codecs", "--classical", "JPEG 2000 tiled", "--ratios", "10", "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "rd.json").read_text())
    assert [row["codec"] for row in report["rows"]] == ["JPEG 2000 tiled"]
    assert report["noise"]["sigma"] == pytest.approx(20, rel=0.1)  # the phantom's Rician σ
    row = report["rows"][0]
    bound = NoiseBound(report["noise"]["sigma"], report["noise"]["data_range"])
    assert row["below_bound_db"] == pytest.approx(bound.psnr(row["ratio"]) - row["psnr"])
    assert 0 < row["snr_loss_percent"] < 100
    table = (tmp_path / "rd.md").read_text()
    assert "| 10 | noise bound | 10 |" in table and "siren" not in table and "| SNR loss % |" in table
