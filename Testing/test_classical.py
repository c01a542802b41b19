"""Classical baselines used by the benchmarks: layouts are exact inverses, sizes are matched."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import phantom
from SirenCompressLib.evaluate.classical import gzip_coded, jpeg2000_at_size, mosaic, unmosaic


def test_mosaic_round_trip():
    data = np.arange(5 * 4 * 7).reshape(5, 4, 7)
    image = mosaic(data)
    assert image.shape == (3 * 5, 3 * 4)
    np.testing.assert_array_equal(unmosaic(image, 7), data)


@pytest.mark.parametrize("layout", ["per-image", "tiled"])
def test_jpeg2000_meets_the_target_size(layout):
    data = phantom(shape=(32, 32, 2), noise=0.05).data
    target = gzip_coded(data).nbytes // 4
    coded = jpeg2000_at_size(data, target, layout, tolerance=0.05)
    assert abs(coded.nbytes - target) <= 0.05 * target
    assert coded.decoded.shape == data.shape and coded.decoded.dtype == data.dtype
    assert 0 < np.abs(coded.decoded.astype(float) - data).mean() < 100
