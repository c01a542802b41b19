"""Archives written by version 0.3 decode unchanged: one small archive per codec (Testing/data/<codec>-0.3.sirz,
written by `make_0.3_fixtures.py` run against the 0.3 tree, commit 00162af) and the voxels 0.3 decoded from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from SirenCompressLib import decompress, read_archive

DATA = Path(__file__).parent / "data"
CODECS_OF_0_3 = ("fmri", "lossless", "siren", "siren3d")


@pytest.mark.parametrize("codec", CODECS_OF_0_3)
def test_a_0_3_archive_decodes_to_what_0_3_decoded(codec):
    archive = read_archive(DATA / f"{codec}-0.3.sirz")
    assert archive.manifest["library_version"] == "0.3.0" and archive.manifest["codec"]["name"] == codec
    decoded = decompress(archive).data
    expected = np.load(DATA / f"{codec}-0.3-decoded.npy")
    assert decoded.dtype == expected.dtype and decoded.shape == expected.shape
    # fmri's decode rounds a float sum whose order numpy may change: one unit at most; the others exactly
    assert np.abs(decoded.astype(np.int64) - expected).max() <= (1 if codec == "fmri" else 0)


@pytest.mark.parametrize("codec", CODECS_OF_0_3)
def test_info_of_a_0_3_archive_without_a_noise_estimate(codec):
    r = run_cli("info", DATA / f"{codec}-0.3.sirz", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["noise"] is None and all(s["noise_fraction"] is None for s in report["slices"])
    text = run_cli("info", DATA / f"{codec}-0.3.sirz")
    assert text.returncode == 0 and "PSNR dB" in text.stdout and "D/σ²" not in text.stdout
