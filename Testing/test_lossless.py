"""The lossless codec: bit-exact for every integer dtype, shape and gradient set; the CR target on the real
sample; damaged archives detected; float input refused unless quantised; the q-space geometry."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import leftovers, phantom, run_cli
from SirenCompressLib import Volume4D, entropy, motion, qspace, read_volume, write_volume
from SirenCompressLib.archive import check_archive, read_archive, to_bytes, write_archive
from SirenCompressLib.codecs import lossless
from SirenCompressLib.errors import ArchiveError, InputError
from SirenCompressLib.noise import estimate_sigma
from SirenCompressLib.pipeline import compress, decompress
from SirenCompressLib.volume import Gradients

DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.uint64]


def round_trip(volume: Volume4D, config: lossless.Config | None = None) -> Volume4D:
    """Compress, write, read and decode."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.sirz"
        write_archive(compress(volume, "lossless", config), path)
        return decompress(read_archive(path))


def random_gradients(draw, volumes: int) -> Gradients | None:
    if volumes < 2 or not draw(st.booleans()):
        return None
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bvals = rng.choice([0.0, 1000.0, 2000.0, 3000.0], volumes)
    bvecs = rng.normal(size=(volumes, 3))
    bvecs[bvals == 0] = 0
    if draw(st.booleans()):  # repeated directions
        bvecs[1:] = bvecs[:-1]
    return Gradients(bvals, bvecs)


@st.composite
def volumes(draw) -> Volume4D:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.integers(1, n)) for n in (9, 9, 2, 9))
    info = np.iinfo(dtype)
    kind = draw(st.sampled_from(["any", "zero", "extremes", "smooth"]))
    if kind == "any":
        data = draw(hnp.arrays(dtype, shape))
    elif kind == "zero":
        data = np.zeros(shape, dtype)
    elif kind == "extremes":
        data = np.where(draw(hnp.arrays(np.bool_, shape)), info.max, info.min).astype(dtype)
    else:
        x = np.linspace(0, 1, shape[0])[:, None, None, None] + np.arange(shape[3]) / 7
        data = (info.min + (x + np.zeros(shape)) / 3 * (float(info.max) - info.min)).astype(dtype)
    return Volume4D(data, np.eye(4), random_gradients(draw, shape[3]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volume=volumes(), interlace=st.sampled_from([1, 2, 3]), order=st.sampled_from(["furthest", "file"]),
       kind=st.sampled_from(["laplace", "biharmonic", "off"]), motion=st.booleans())
def test_every_integer_volume_comes_back_bit_exact(volume, interlace, order, kind, motion):
    config = lossless.Config(references=3, interlace=interlace, order=order, qspace=kind, motion=motion)
    out = round_trip(volume, config)
    assert out.data.dtype == volume.data.dtype
    np.testing.assert_array_equal(out.data, volume.data)


def test_the_real_sample_is_coded_at_least_three_times_smaller(sample_nifti):
    """The issue's target: CR ≥ 3.0 against raw 16-bit on the in-vivo sample rounded to int16."""
    sample = read_volume(sample_nifti)
    volume = Volume4D(np.rint(sample.data).astype(np.int16), sample.ijk_to_ras, sample.gradients)
    archive = compress(volume, "lossless")
    assert volume.data.size * 2 / len(to_bytes(archive)) >= 3.0
    np.testing.assert_array_equal(decompress(archive).data, volume.data)


def test_motion_compensation_pays_off_on_moving_data(sample_nifti):
    pytest.importorskip("SimpleITK", reason="--motion needs SimpleITK (the motion and test extras)")
    sample = read_volume(sample_nifti)
    still = Volume4D(np.rint(sample.data[:, :, :1, :40]).astype(np.int16), sample.ijk_to_ras,
                     Gradients(sample.gradients.bvals[:40], sample.gradients.bvecs[:40]))
    volume = motion.simulate(still)
    plain = len(to_bytes(compress(volume, "lossless")))
    archive = compress(volume, "lossless", lossless.Config(motion=True))
    assert len(to_bytes(archive)) < 0.95 * plain
    np.testing.assert_array_equal(decompress(archive).data, volume.data)


def test_smaller_than_jpeg_ls_of_every_image_on_a_phantom():
    imagecodecs = pytest.importorskip("imagecodecs", reason="JPEG-LS comparison needs imagecodecs")
    volume = phantom(shape=(32, 32, 2), directions=20, noise=0.01)
    ours = len(to_bytes(compress(volume, "lossless")))
    assert volume.data.min() >= 0
    data = volume.data.astype(np.uint16)  # JPEG-LS codes unsigned samples
    jpegls = sum(len(imagecodecs.jpegls_encode(np.ascontiguousarray(data[:, :, z, v]), level=0))
                 for z in range(data.shape[2]) for v in range(data.shape[3]))
    assert ours < 0.9 * jpegls


def test_q_space_inpainting_is_chosen_on_smooth_shells():
    """On a noise-free phantom with many directions, inpainting on the sphere predicts well enough to be
    picked for some volumes (it needs no fitted weights)."""
    volume = phantom(shape=(12, 12, 1), directions=30, noise=0.0)
    archive = compress(volume, "lossless")
    member = archive.members[archive.manifest["slices"][0]["member"]]
    steps, _, _ = lossless._unpack(member, volume.shape[3], 1)
    assert any(step.mode == lossless.QSPACE for step in steps)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_member_is_an_archive_error(damage):
    volume = phantom(shape=(10, 8, 1))
    archive = compress(volume, "lossless")
    name = archive.manifest["slices"][0]["member"]
    member = bytearray(archive.members[name])
    if damage == "flip":
        member[len(member) // 2] ^= 0x10
    else:
        member = member[:-3]
    archive.members[name] = bytes(member)
    with pytest.raises(ArchiveError):
        decompress(archive)


def test_a_wrong_checksum_is_an_archive_error():
    volume = phantom(shape=(6, 6, 1))
    archive = compress(volume, "lossless")
    archive.manifest["slices"][0]["sha256"] = "0" * 64
    with pytest.raises(ArchiveError, match="SHA-256"):
        decompress(archive)


@pytest.mark.parametrize("least", [1, 16])
def test_a_small_slice_takes_the_least_lanes_and_old_settings_mean_one(least):
    """A 3D image of 24×20 voxels: ⌊480/4096⌋ = 0 lanes by the symbol count, so `least_lanes` decides (bounded by
    the smallest chunk, a checkerboard half of 240); settings stored without it (before 0.7) mean 1."""
    volume = Volume4D(np.random.default_rng(0).integers(0, 900, (24, 20, 1, 1)).astype(np.int16), np.eye(4))
    archive = compress(volume, "lossless", lossless.Config(least_lanes=least))
    member = archive.members[archive.manifest["slices"][0]["member"]]
    _, side, side_bits, _, _ = np.frombuffer(member, dtype=np.uint32, count=5)
    stream_lanes = np.frombuffer(member, dtype=np.uint32, count=1, offset=20 + int(side) + int(side_bits))
    assert int(stream_lanes[0]) == least
    np.testing.assert_array_equal(decompress(archive).data, volume.data)
    stored = {k: v for k, v in lossless.Config().to_json().items() if k != "least_lanes"}
    assert lossless.Config.from_json(stored).least_lanes == 1 and lossless.Config().least_lanes == 16


def test_float_data_needs_a_quantisation_step():
    volume = phantom(shape=(6, 6, 1))
    floats = Volume4D(volume.data.astype(np.float32) / 3, volume.ijk_to_ras, volume.gradients)
    with pytest.raises(InputError, match="--quantize"):
        compress(floats, "lossless")
    archive = compress(floats, "lossless", lossless.Config(quantize=0.25))
    assert archive.manifest["codec"]["config"]["quantize"] == 0.25
    out = decompress(archive).data
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, (np.rint(floats.data / 0.25) * 0.25).astype(np.float32))


def test_cli_round_trip_is_bit_exact_and_refuses_network_flags(tmp_path, phantom_nifti):
    sirz, back = tmp_path / "p.sirz", tmp_path / "back.nii.gz"
    result = run_cli("compress", phantom_nifti, "-o", sirz, "--codec", "lossless", "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert "bit-exact" in result.stdout
    assert run_cli("decompress", sirz, "-o", back, block_torch=True).returncode == 0
    np.testing.assert_array_equal(read_volume(back).data, read_volume(phantom_nifti).data)
    bad = run_cli("compress", phantom_nifti, "-o", tmp_path / "q.sirz", "--codec", "lossless", "--units", "8")
    assert bad.returncode == 2 and "does not apply to the lossless codec" in bad.stderr
    assert not (tmp_path / "q.sirz").exists() and not leftovers(tmp_path)


def test_chunked_entropy_coding_round_trips_with_contexts_from_earlier_chunks():
    rng = np.random.default_rng(3)
    chunks = [0, 1, 50, 7, 300, 2]
    symbols = rng.integers(0, 30, sum(chunks))
    contexts = np.concatenate([np.full(n, i % 3) for i, n in enumerate(chunks)])
    for lanes, increment in [(1, 1), (7, 32)]:
        data = entropy.encode_chunks(symbols, 30, contexts, 3, chunks, lanes, increment)
        decoder = entropy.ChunkDecoder(data, 30, 3, sum(chunks), lanes, increment)
        got, at = [], 0
        for n in chunks:
            got.append(decoder.next(contexts[at:at + n]))
            at += n
        decoder.close()
        np.testing.assert_array_equal(np.concatenate(got), symbols)


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.uint64, st.integers(0, 40)))
def test_integer_binarisation_round_trips(values):
    tokens, nbits, extra = entropy.split_integers(values)
    assert tokens.size == 0 or tokens.max() < entropy.TOKENS
    reader = entropy.BitReader(entropy.pack_bits(extra, nbits))
    np.testing.assert_array_equal(entropy.join_integers(tokens, reader.read(nbits)), values)
    reader.close()


def test_inpainting_weights_reproduce_constants_and_smooth_signals():
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(40, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    signal = 1 + 0.3 * directions[:, 2] ** 2  # smooth and antipodally symmetric
    known = list(range(39))
    for kind in ("laplace", "biharmonic"):
        weights = qspace.inpainting_weights(directions, known, 39, kind)
        assert weights.sum() == pytest.approx(1.0)
        assert abs(weights @ signal[known] - signal[39]) < 0.05
    assert qspace.inpainting_weights(directions[:3], [0, 1], 2) is None


def test_coding_order_puts_b0_first_then_each_shell_furthest_first():
    bvals = np.array([1000, 0, 1000, 2000, 1000, 0, 2000])
    bvecs = np.array([[1, 0, 0], [0, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 0]])
    order = qspace.coding_order(bvals, bvecs, 7)
    assert order[:2] == [1, 5] and order[2] == 0 and order[3] == 4 and set(order[5:]) == {3, 6}


# --- near-lossless (--max-error) -------------------------------------------------------------------------

NEAR_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volume=volumes().filter(lambda v: v.data.dtype.itemsize <= 4), bound=st.sampled_from([1, 2, 7, 300]),
       interlace=st.sampled_from([1, 2, 3]), motion=st.booleans())
def test_near_lossless_keeps_every_voxel_within_the_bound(volume, bound, interlace, motion):
    """Any dtype up to 32 bits, values at its limits included, a bound larger than the data's range too."""
    config = lossless.Config(references=3, interlace=interlace, max_error=bound, motion=motion)
    archive = compress(volume, "lossless", config)
    out = decompress(archive).data
    assert out.dtype == volume.data.dtype
    assert np.abs(out.astype(np.int64) - volume.data.astype(np.int64)).max() <= bound
    assert all(entry["max_error"] == bound for entry in archive.manifest["slices"])


@pytest.mark.parametrize("dtype", NEAR_DTYPES)
def test_near_lossless_at_the_dtype_limits(dtype):
    """Predictions that overshoot the range are clamped: extremes and a ramp across the whole range."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(1)
    data = np.where(rng.random((7, 6, 1, 5)) < 0.5, info.max, info.min).astype(dtype)
    data[:3] = np.linspace(info.min, info.max, 3 * 6 * 5).reshape(3, 6, 1, 5).astype(dtype)
    for bound in (1, 5):
        out = decompress(compress(Volume4D(data, np.eye(4)), "lossless", lossless.Config(max_error=bound))).data
        assert np.abs(out.astype(np.int64) - data.astype(np.int64)).max() <= bound


def test_near_lossless_on_real_data_is_bounded_and_smaller(sample_nifti):
    sample = read_volume(sample_nifti)
    crop = np.rint(sample.data[44:60, 44:60, :1, :8]).astype(np.int16)
    volume = Volume4D(crop, sample.ijk_to_ras, Gradients(sample.gradients.bvals[:8], sample.gradients.bvecs[:8]))
    sizes = {}
    for config in (lossless.Config(), lossless.Config(max_error=2), lossless.Config(max_error_noise=1.0)):
        archive = compress(volume, "lossless", config)
        bound = archive.manifest["slices"][0].get("max_error", 0)
        error = np.abs(decompress(archive).data.astype(np.int64) - crop).max()
        assert error <= bound
        sizes[bound] = len(to_bytes(archive))
    noise_bound = max(sizes)
    assert noise_bound == int(np.floor(estimate_sigma(crop))) > 2
    assert sizes[0] > 1.2 * sizes[2] > 1.2 * sizes[noise_bound]


def test_a_bound_of_zero_is_plain_lossless_and_old_readers_see_no_new_setting():
    volume = phantom(shape=(6, 6, 1))
    plain = compress(volume, "lossless")
    assert not set(lossless.NEAR_LOSSLESS_KEYS) & set(plain.manifest["codec"]["config"])
    zero = compress(volume, "lossless", lossless.Config(max_error=0))
    assert "max_error" not in zero.manifest["slices"][0]
    np.testing.assert_array_equal(decompress(zero).data, volume.data)
    assert zero.members == plain.members


def test_near_lossless_refuses_what_it_cannot_bound():
    volume = phantom(shape=(6, 6, 1))
    floats = Volume4D(volume.data.astype(np.float32), volume.ijk_to_ras, volume.gradients)
    for config in (lossless.Config(max_error=2), lossless.Config(quantize=1.0, max_error_noise=0.5)):
        with pytest.raises(InputError, match="for integer data, not float32"):
            compress(floats, "lossless", config)
    wide = Volume4D(volume.data.astype(np.int64), volume.ijk_to_ras, volume.gradients)
    with pytest.raises(InputError, match="at most 32 bits"):
        compress(wide, "lossless", lossless.Config(max_error=1))
    with pytest.raises(InputError, match="not both"):
        lossless.Config(max_error=1, max_error_noise=1.0)


def test_an_archive_beyond_its_bound_is_never_written(monkeypatch):
    """The decode is checked against the input at encode: a codec bug that broke the bound stops compress."""
    volume = phantom(shape=(6, 6, 1))
    decode = lossless.decode_slice
    monkeypatch.setattr(lossless, "decode_slice", lambda *a: decode(*a) + 3)
    with pytest.raises(RuntimeError, match="beyond the bound 2"):
        compress(volume, "lossless", lossless.Config(max_error=2))


def test_a_tampered_bound_is_an_archive_error():
    archive = compress(phantom(shape=(6, 6, 1)), "lossless", lossless.Config(max_error=2))
    for value in (0, 2.5, "2"):
        archive.manifest["slices"][0]["max_error"] = value
        with pytest.raises(ArchiveError, match="max_error"):
            check_archive(archive)


def test_cli_near_lossless_and_its_refusals(tmp_path, capsys):
    from SirenCompressLib.cli import main

    data = phantom(shape=(8, 8, 1), directions=5).data
    for name, values in (("i.nii.gz", data), ("f.nii.gz", data.astype(np.float32))):
        write_volume(Volume4D(values, np.eye(4)), tmp_path / name)
    sirz = tmp_path / "i.sirz"
    assert main(["compress", str(tmp_path / "i.nii.gz"), "-o", str(sirz), "--codec", "lossless", "--max-error", "3",
                 "--progress", "none"]) == 0
    assert "every voxel within ±3 of the input" in capsys.readouterr().out
    assert np.abs(decompress(read_archive(sirz)).data - data).max() <= 3
    assert main(["compress", str(tmp_path / "f.nii.gz"), "-o", str(tmp_path / "q.sirz"), "--codec", "lossless",
                 "--max-error", "1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "sirencompress: error: --max-error and --max-error-noise are for integer data, not float32 (--quantize "
        "STEP codes float data losslessly after rounding)"]
    assert not (tmp_path / "q.sirz").exists() and not leftovers(tmp_path)
