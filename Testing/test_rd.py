"""The rate-distortion benchmark machinery, on a tiny phantom with tiny settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import phantom, run_cli
from SirenCompressLib import SirenConfig, Volume4D
from SirenCompressLib.codecs import siren3d
from SirenCompressLib.evaluate import rd


def test_rows_table_plot_and_json(tmp_path):
    volume = phantom(shape=(24, 24, 2), directions=12, bvalues=(1000.0,))
    clean = phantom(shape=(24, 24, 2), directions=12, bvalues=(1000.0,), noise=0.0).data
    tiny = SirenConfig(layers=2, epochs=20, lr=3e-3, weight_bits=8, device="cpu")
    sirens = {"siren tiny": ("siren", tiny), "siren3d tiny": ("siren3d", siren3d.Config(**tiny.to_json()))}
    rows = rd.run(volume, [4.0], sirens, ["JPEG 2000 tiled"], clean, log=lambda line: None)
    assert [r.codec for r in rows] == ["siren tiny", "siren3d tiny", "JPEG 2000 tiled"]
    for r in rows:
        assert r.ratio == pytest.approx(4.0, rel=0.1) and r.psnr_clean is not None and r.psnr > 20
    table = rd.markdown(rows, clean=True)
    assert table.count("\n") == 5 and "**" in table and "PSNR vs noise-free" in table
    rd.plot(rows, str(tmp_path / "rd.png"), "tiny")
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
