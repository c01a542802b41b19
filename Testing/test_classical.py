"""Classical baselines used by the benchmarks: layouts are exact inverses, sizes are matched."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import phantom
from SirenCompressLib import compare
from SirenCompressLib.evaluate.classical import gzip_coded, hevc_at_size, images_at_size, klt_at_size, mosaic, unmosaic


@pytest.fixture(scope="module")
def data():
    return phantom(shape=(32, 32, 2), noise=0.05).data


def test_mosaic_round_trip():
    data = np.arange(5 * 4 * 7).reshape(5, 4, 7)
    image = mosaic(data)
    assert image.shape == (3 * 5, 3 * 4)
    np.testing.assert_array_equal(unmosaic(image, 7), data)


@pytest.mark.parametrize("codec", ["JPEG 2000", "HTJ2K", "JPEG XL"])
@pytest.mark.parametrize("layout", ["per-image", "tiled"])
def test_image_codecs_meet_the_target_size(data, codec, layout):
    target = gzip_coded(data).nbytes // 4
    coded = images_at_size(data, target, codec, layout, tolerance=0.05)
    assert abs(coded.nbytes - target) <= 0.05 * target, coded.nbytes
    assert coded.decoded.shape == data.shape and coded.decoded.dtype == data.dtype
    assert 25 < compare(data, coded.decoded).whole.psnr < 80


def test_klt_meets_the_target_and_beats_no_klt_on_low_rank_data(data):
    target = gzip_coded(data).nbytes // 8
    coded = klt_at_size(data, target, components=(2, 4, 8), tolerance=0.05)
    assert coded.nbytes <= 1.05 * target and "components" in coded.name
    plain = images_at_size(data, target, "JPEG 2000", "per-image", tolerance=0.05)
    assert compare(data, coded.decoded).whole.psnr > compare(data, plain.decoded).whole.psnr


def test_hevc_meets_the_target_size_and_gains_with_it():
    pytest.importorskip("av", reason="HEVC through x265 needs PyAV: pip install 'sirencompress[bench]'")
    data = phantom(shape=(30, 13, 2), noise=0.05).data  # 13 pixels: padded for x265 and cropped back
    psnrs = []
    for target in (gzip_coded(data).nbytes // 8, gzip_coded(data).nbytes // 4):
        coded = hevc_at_size(data, target)
        assert abs(coded.nbytes - target) <= 0.01 * target, (coded.nbytes, target)
        assert coded.decoded.shape == data.shape and coded.decoded.dtype == data.dtype
        assert coded.name.startswith("HEVC 12-bit, CRF ")
        psnrs.append(compare(data, coded.decoded).whole.psnr)
    assert 25 < psnrs[0] < psnrs[1] < 80, psnrs
