"""Archives written by version 0.3 decode unchanged: one small archive per codec (Testing/data/<codec>-0.3.sirz,
written by `make_0.3_fixtures.py` run against the 0.3 tree, commit 00162af) and the voxels 0.3 decoded from it;
and so does a transform archive of 0.5 (`make_0.5_fixtures.py`)."""

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


def test_a_0_5_transform_archive_decodes_to_what_0_5_decoded():
    """Written by `make_0.5_fixtures.py` with 0.5.0 (commit 2fc085c): float data with negative reconstruction
    offsets. The symbols decode exactly; the voxels to float64 rounding (matrix products may sum in another
    order)."""
    archive = read_archive(DATA / "transform-0.5.sirz")
    assert archive.manifest["library_version"] == "0.5.0" and archive.manifest["codec"]["name"] == "transform"
    decoded = decompress(archive).data
    expected = np.load(DATA / "transform-0.5-decoded.npy")
    assert decoded.dtype == expected.dtype == np.float32 and decoded.shape == expected.shape
    np.testing.assert_allclose(decoded, expected, rtol=1e-6, atol=1e-3)
