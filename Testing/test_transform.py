"""The transform codec (issue 16) at its edges: the error a step Δ gives, every dtype, few volumes and
components, constant slices, thin and odd-sized slices, bad input, rate control, bit-identical decoding
without torch, damaged members, and the command line."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

import fuzzing
from conftest import run_cli
from SirenCompressLib import Volume4D, compress, decompress, pipeline, read_archive, write_volume
from SirenCompressLib.archive import Archive, to_bytes
from SirenCompressLib.codecs import suggest, transform
from SirenCompressLib.codecs.transform import Config, training_stride
from SirenCompressLib.context_model import Network
from SirenCompressLib.errors import ArchiveError, InputError
from SirenCompressLib.phantom import dwi_phantom
from SirenCompressLib.pipeline import decode_slice
from SirenCompressLib.rate import config_for_psnr, config_for_ratio

SIGMA = 20.0  # the phantoms' noise: 0.02 of s0 = 1000


def phantom(shape=(16, 14, 3), directions=14, **kwargs) -> Volume4D:
    """A small noisy int16 DWI phantom (directions + 1 volumes, noise σ 20)."""
    return dwi_phantom(shape=shape, directions=directions, bvalues=(1000.0,), noise=SIGMA / 1000, seed=1, **kwargs)


def round_trip(data: np.ndarray, **settings) -> tuple[np.ndarray, Archive]:
    archive = compress(Volume4D(data), "transform", Config(**settings))
    return decompress(archive).data, archive


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def error_bound(step: float, integer: bool, rounding: float = Config().rounding) -> float:
    """The RMSE a step Δ allows, from the quantiser alone.

    The KLT and the wavelet are orthonormal (the basis rows are stored to about Δ/24 of their component's
    deviation), so the squared error of the voxels is that of the coefficients (Parseval). A coefficient in
    the deadzone, |c| < (1 − r)Δ, decodes to 0: its error is below (1 − r)Δ, and with the coefficients spread
    evenly over the zone, its mean square is ((1 − r)Δ)²/3. Every other bin is Δ wide and decodes to the mean
    of its class, within Δ²/12 for coefficients spread evenly over it: less than the deadzone's. Rounding to
    an integer dtype adds 1/12 (independent of the rest); clamping to the value range only removes error.
    Noise-like coefficients bunch near 0 (less error than even spread); a margin of 5 % covers the basis.
    The bound holds where the rate–distortion rule keeps every component that carries signal above the
    noise: Δ at most the noise σ.
    """
    return 1.05 * math.sqrt(((1 - rounding) * step) ** 2 / 3 + (1 / 12 if integer else 0))


# --- accuracy -------------------------------------------------------------------------------------------


def test_the_error_is_about_the_step_and_psnr_rises_as_the_step_falls():
    volume = phantom()
    psnrs = []
    for step in (40.0, 20.0, 10.0, 5.0):
        decoded, archive = round_trip(volume.data, step=step)
        error = rmse(decoded, volume.data)
        if step <= SIGMA:
            assert 0.2 * step < error <= error_bound(step, integer=True), step  # not lossless, not worse
        psnrs.append(archive.manifest["metrics"]["psnr"])
        assert all(e["step"] == step for e in archive.manifest["slices"])
    assert all(b > a for a, b in zip(psnrs, psnrs[1:])), psnrs
    assert all(b > a + 5 for a, b in zip(psnrs[1:], psnrs[2:])), psnrs  # about 6 dB a halving at Δ ≤ σ


@pytest.mark.parametrize("dtype, scale, step", [("int16", 1, 10.0), ("uint16", 1, 10.0), ("uint8", 1 / 8, 1.5),
                                                ("float32", 1 / 7, 1.0), ("float64", 1e-3, 0.01)])
def test_every_dtype_round_trips_within_the_bound(dtype, scale, step):
    data = phantom().data.astype(np.float64) * scale
    data = (np.rint(data) if np.dtype(dtype).kind in "iu" else data).astype(dtype)
    decoded, _ = round_trip(data, step=step)
    assert decoded.dtype == data.dtype and decoded.shape == data.shape
    assert rmse(decoded, data) <= error_bound(step, integer=np.dtype(dtype).kind in "iu")


def test_default_step_is_the_noise():
    volume = phantom()
    assert 0.5 * SIGMA < transform.resolved_step(volume.data, Config()) < 1.5 * SIGMA
    decoded, archive = round_trip(volume.data)
    assert rmse(decoded, volume.data) <= error_bound(archive.manifest["slices"][0]["step"], integer=True)


# --- volumes and components -----------------------------------------------------------------------------


@pytest.mark.parametrize("volumes", [1, 2, 6])
def test_fewer_volumes_than_max_components(volumes):
    data = phantom(directions=5).data[..., :volumes]
    decoded, archive = round_trip(data, step=10.0, max_components=100)
    assert all(e["components"] <= volumes for e in archive.manifest["slices"])
    assert rmse(decoded, data) <= error_bound(10.0, integer=True)


def test_max_components_caps_the_components():
    data = phantom().data
    _, archive = round_trip(data, step=10.0, max_components=3)
    assert [e["components"] for e in archive.manifest["slices"]] == [3, 3, 3]


def test_one_volume_is_coded_but_not_suggested():
    """One volume has no q-space to transform: it is coded correctly when asked for (one component, the
    in-plane wavelet), and the codec is not suggested for it."""
    data = phantom().data[..., :1]
    decoded, _ = round_trip(data, step=10.0)
    assert rmse(decoded, data) <= error_bound(10.0, integer=True)
    assert suggest(True, 1) != "transform" and suggest(True, 2) == "transform" and suggest(False, 15, True) == \
        "transform"
    decoded, archive = round_trip(data)  # the noise σ needs 2 volumes: Δ 1
    assert archive.manifest["slices"][0]["step"] == 1.0 and rmse(decoded, data) <= error_bound(1.0, integer=True)


# --- constant data --------------------------------------------------------------------------------------


def _block(archive: Archive, z: int) -> bytes:
    """Slice z's block in its slab's member."""
    entry = archive.manifest["slices"][z]
    blocks = transform._read_slab(archive.members[entry["member"]], archive.manifest["shape"][3])[3]
    return blocks[entry["slab_position"]]


def _small_block(block: bytes) -> bool:
    """A block of little but its side stream and the final states of an empty coefficient stream."""
    return len(block) <= 4 * transform.MIN_LANES + 96


def test_a_constant_slice_is_exact_enough_and_tiny():
    data = phantom().data
    data[:, :, 1] = 500
    decoded, archive = round_trip(data, step=20.0)
    assert archive.manifest["slices"][1]["components"] == 0 and _small_block(_block(archive, 1))
    assert np.abs(decoded[:, :, 1].astype(int) - 500).max() <= 20.0 / (2 * transform.MEAN_STEPS) + 0.5
    assert rmse(decoded, data) <= error_bound(20.0, integer=True)


@pytest.mark.parametrize("value, dtype", [(0, "int16"), (77, "int16"), (3.25, "float32")])
def test_an_all_constant_volume_is_exact_and_tiny(value, dtype):
    for size in (8, 64):  # the member does not grow with the slice
        data = np.full((size, size, 3, 5), value, dtype=dtype)
        decoded, archive = round_trip(data)  # the default step: no noise to measure
        np.testing.assert_array_equal(decoded, data)
        assert all(_small_block(_block(archive, z)) for z in range(3))
        member = archive.members["slices/0000.bin"]  # the network, an empty basis and the blocks
        assert len(member) <= Network.from_bytes(member)[1] + 32 + sum(4 + len(_block(archive, z)) for z in range(3))
        assert len(to_bytes(archive)) < 4000


# --- shapes ---------------------------------------------------------------------------------------------


def test_a_volume_of_one_slice():
    data = phantom(shape=(16, 14, 1)).data
    decoded, archive = round_trip(data, step=10.0)
    assert len(archive.manifest["slices"]) == 1 and rmse(decoded, data) <= error_bound(10.0, integer=True)


@pytest.mark.parametrize("nx, ny", [(13, 17), (7, 5), (1, 20), (20, 1), (1, 1), (2, 2), (17, 33), (16, 16)])
def test_odd_in_plane_sizes(nx, ny):
    rng = np.random.default_rng(nx * 100 + ny)
    smooth = np.cumsum(rng.normal(0, 30, (nx, ny, 2, 1)), axis=1) + rng.normal(0, 10, (nx, ny, 2, 6))
    data = np.rint(500 + smooth).astype(np.int16)
    decoded, archive = round_trip(data, step=5.0)
    assert decoded.shape == data.shape
    assert rmse(decoded, data) <= error_bound(5.0, integer=True)
    assert all(e["components"] <= min(6, nx * ny) for e in archive.manifest["slices"])


def test_padded_sizes():
    assert [transform.padded_size(n) for n in (1, 5, 13, 15, 16, 17, 24, 33)] == [1, 5, 13, 15, 16, 24, 24, 40]


def test_the_rate_estimate_sees_the_features_the_entropy_model_sees():
    symbols = np.random.default_rng(5).geometric(0.4, (9, 16, 24)) - 1  # more maps than the history
    features, buckets = transform._features(symbols)
    for k, where, stack, bucket in transform._passes(symbols):
        assert np.array_equal(features[:, k][:, where], stack) and np.all(buckets[k][where] == bucket)


def test_the_entropy_model_trains_to_the_same_weights_whatever_torch_threads_are_set(monkeypatch):
    """Its optimiser steps run in one thread (in two, archives differed by a few bytes from run to run on the
    real sample) and torch's thread count is left as it was."""
    import torch

    from SirenCompressLib import context_model

    threads_seen = set()
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step",
                        lambda self, *a, **k: threads_seen.add(torch.get_num_threads()) or step(self, *a, **k))

    symbols = np.random.default_rng(7).geometric(0.3, (8, 24, 24)) - 1
    passes = list(transform._passes(symbols))
    args = (np.concatenate([stack.T for _, _, stack, _ in passes]),
            np.concatenate([np.full(int(where.sum()), bucket) for _, where, _, bucket in passes]),
            np.concatenate([context_model.log_magnitude(symbols[k][where]) for k, where, _, _ in passes]))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        networks = [context_model.train(*args, steps=60).to_bytes() for _ in range(3)]
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        networks.append(context_model.train(*args, steps=60).to_bytes())
    finally:
        torch.set_num_threads(threads)
    assert len(set(networks)) == 1 and threads_seen == {1}


def test_rate_distortion_decisions_pick_zero_or_a_neighbouring_integer_and_zero_some_symbols():
    values = np.random.default_rng(6).laplace(0, 0.8, (6, 16, 16))
    symbols = transform._deadzone(values, Config().rounding)
    chosen = transform._optimised(values, symbols)
    below = np.floor(np.abs(values))
    assert np.all((chosen == 0) | (np.abs(chosen) == below) | (np.abs(chosen) == below + 1))
    assert np.all(chosen * values >= 0) and np.count_nonzero(chosen) < np.count_nonzero(symbols)


def test_thin_slices_with_many_volumes_code_at_most_one_component_per_voxel():
    rng = np.random.default_rng(3)
    data = rng.normal(500, 50, (1, 3, 2, 40)).astype(np.float32)
    decoded, archive = round_trip(data, step=0.5)
    assert all(e["components"] <= 3 for e in archive.manifest["slices"])
    assert rmse(decoded, data) <= error_bound(0.5, integer=False)


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_data_that_is_not_finite_is_an_input_error(bad):
    data = phantom().data.astype(np.float32)
    data[3, 4, 1, 2] = bad
    with pytest.raises(InputError):
        Volume4D(data)
    volume = Volume4D(np.zeros_like(data))
    volume.data = data  # past the constructor's check: the codec checks again
    with pytest.raises(InputError, match="finite"):
        compress(volume, "transform", Config(step=1.0))


def test_a_step_too_small_for_the_data_is_an_input_error():
    with pytest.raises(InputError, match="too small"):
        round_trip(phantom().data, step=1e-30)


def test_a_huge_step_codes_the_means_alone():
    data = phantom().data
    decoded, archive = round_trip(data, step=1e5)
    assert all(e["components"] == 0 for e in archive.manifest["slices"])
    assert decoded.shape == data.shape


@pytest.mark.parametrize("given, message", [({"step": -1.0}, "step must be above 0"),
                                            ({"step": 0.0}, "step must be above 0"),
                                            ({"rounding": 0.9}, "rounding must be"),
                                            ({"max_components": -1}, "max components must be"),
                                            ({"context_units": 0}, "context units must be")])
def test_bad_settings_are_input_errors(given, message):
    with pytest.raises(InputError, match=message):
        Config(**given)


# --- rate control ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rate_phantom() -> Volume4D:
    return dwi_phantom(shape=(24, 24, 4), directions=29, bvalues=(1000.0,), noise=0.02, seed=3)


@pytest.mark.parametrize("ratio", [10, 20])
def test_target_ratio_is_met_within_3_percent(rate_phantom, ratio):
    config = config_for_ratio(Config(), rate_phantom, ratio, "transform")
    reached = rate_phantom.data.size * 2 / len(to_bytes(compress(rate_phantom, "transform", config)))
    assert reached == pytest.approx(ratio, rel=0.03)


def test_target_ratio_of_a_volume_whose_model_trains_on_some_slices():
    """16 slices: the model trains on every second one, so the search ends on whole encodes, whose slabs' later
    slices have no member of their own."""
    volume = dwi_phantom(shape=(16, 16, 16), directions=20, bvalues=(1000.0,), noise=0.02, seed=5)
    assert training_stride(16) == 2
    config = config_for_ratio(Config(slab=4), volume, 12, "transform")
    reached = volume.data.size * 2 / len(to_bytes(compress(volume, "transform", config)))
    assert reached == pytest.approx(12, rel=0.03)


def test_target_psnr_is_reached(rate_phantom):
    config, _ = config_for_psnr(Config(), rate_phantom, 45.0, "transform")
    psnr = compress(rate_phantom, "transform", config).manifest["metrics"]["psnr"]
    assert 45.0 <= psnr < 45.1  # measured on the decoded int16 voxels: reached, and by not much


def test_a_ratio_out_of_reach_is_an_input_error():
    with pytest.raises(InputError, match="out of reach"):
        config_for_ratio(Config(), phantom(), 5000, "transform")


# --- decoding -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coded() -> Archive:
    return compress(phantom(shape=(13, 17, 2)), "transform", Config(step=10.0))


def test_decoding_is_repeatable_and_needs_no_torch(coded, monkeypatch):
    first, second = decompress(coded).data, decompress(coded).data
    np.testing.assert_array_equal(first, second)
    expected = [decode_slice(coded, z) for z in range(2)]
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    for module in [m for m in sys.modules if m.startswith("torch.")]:
        monkeypatch.setitem(sys.modules, module, None)
    for z in range(2):
        np.testing.assert_array_equal(decode_slice(coded, z), expected[z])
        entry = coded.manifest["slices"][z]
        raw = transform.decode_slice(Config.from_json(coded.manifest["codec"]["config"]), entry,
                                     coded.members[entry["member"]], tuple(coded.manifest["shape"]))
        assert raw.dtype == np.float64 and raw.shape == (13, 17, 15)
    np.testing.assert_array_equal(decompress(coded).data, first)


@pytest.mark.parametrize("slab", [1, 2, 8])
def test_slices_decoded_together_are_the_slices_decoded_alone(monkeypatch, slab):
    data = phantom(shape=(13, 17, 5)).data.copy()
    data[:, :, 1] = 700  # no components
    data[:, :, 3, 9:] = data[:, :, 3, :1]  # fewer components than the others (with a basis of its own)
    archive = compress(Volume4D(data), "transform", Config(step=10.0, slab=slab))
    assert len({entry["components"] for entry in archive.manifest["slices"]}) >= (3 if slab == 1 else 2)
    assert len(archive.members) == -(-5 // slab)
    together = decompress(archive).data
    monkeypatch.setattr(pipeline, "DECODE_BATCH", 1)  # the pipeline now decodes slice by slice
    np.testing.assert_array_equal(decompress(archive).data, together)
    np.testing.assert_array_equal(together[:, :, 1], 700)


def test_worker_processes_decode_what_threads_decode(monkeypatch):
    data = phantom(shape=(9, 11, 6)).data
    archive = compress(Volume4D(data), "transform", Config(step=10.0, slab=2))  # slabs 4–5 in two batches
    monkeypatch.setattr(pipeline, "DECODE_BATCH", 2)
    monkeypatch.setattr(pipeline, "PROCESS_VOXELS", 0)  # this small volume, too
    pools = []

    class Pool(pipeline.ProcessPoolExecutor):  # the real one, counted
        def __init__(self, *args) -> None:
            pools.append(args)
            super().__init__(*args)

    monkeypatch.setattr(pipeline, "ProcessPoolExecutor", Pool)
    assert len(pipeline.decode_batches(6)) == 4
    np.testing.assert_array_equal(decompress(archive, processes=True).data, decompress(archive).data)
    assert len(pools) == 1
    member = archive.members["slices/0004.bin"]
    damaged = Archive(archive.manifest, {**archive.members, "slices/0004.bin": b"\0" + member[1:]})
    with pytest.raises(ArchiveError, match="entropy model has 0 hidden units"):  # from a worker, as it is
        decompress(damaged, processes=True)


@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 47, 48, 49, 72, 145])
def test_decode_batches_share_the_threads_evenly(count):
    batches = pipeline.decode_batches(count)
    assert [z for batch in batches for z in batch] == list(range(count)) and all(batches)
    sizes = [len(batch) for batch in batches]
    assert max(sizes, default=0) <= pipeline.DECODE_BATCH and max(sizes, default=0) - min(sizes, default=0) <= 1
    if count > pipeline.DECODE_BATCH:
        assert len(batches) % pipeline.DECODE_WORKERS == 0
    else:
        assert len(batches) == min(count, 1)
    assert len(batches) <= max(-(-count // pipeline.DECODE_BATCH), 1) + pipeline.DECODE_WORKERS - 1


def _decoded_or_archive_error(archive_bytes: bytes, shape: tuple) -> str:
    """'error' for an ArchiveError, 'decoded' for a volume of the declared shape; anything else fails."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".sirz") as f:
        f.write(archive_bytes)
        f.flush()
        try:
            volume = decompress(read_archive(f.name))
        except ArchiveError:
            return "error"
    assert volume.data.shape == shape
    return "decoded"


def _decoded(archive_bytes: bytes, tmp_path) -> Volume4D:
    path = tmp_path / "edited.sirz"
    path.write_bytes(archive_bytes)
    return decompress(read_archive(path))


def _with_member(archive: Archive, change) -> bytes:
    def edit(manifest, members):
        members["slices/0000.bin"] = change(members["slices/0000.bin"])
    return fuzzing.edited(to_bytes(archive), edit)  # re-signed: the codec's own checks must catch it


def test_flipped_bytes_are_refused_or_decode(coded):
    member = coded.members["slices/0000.bin"]
    outcomes = []
    for at in sorted({0, 1, 2, len(member) - 1, *range(0, len(member), max(1, len(member) // 40))}):
        for mask in (0x01, 0x80, 0xFF):
            def flip(m, at=at, mask=mask):
                return m[:at] + bytes([m[at] ^ mask]) + m[at + 1:]
            outcomes.append(_decoded_or_archive_error(_with_member(coded, flip), tuple(coded.manifest["shape"])))
    assert outcomes.count("error") > len(outcomes) / 3


def test_truncated_and_extended_members_are_refused(coded):
    member = coded.members["slices/0000.bin"]
    for keep in sorted({0, 1, 10, 200, len(member) // 2, len(member) - 3, len(member) - 1}):
        assert _decoded_or_archive_error(_with_member(coded, lambda m, k=keep: m[:k]), ()) == "error", keep
    assert _decoded_or_archive_error(_with_member(coded, lambda m: m + bytes(64)), ()) == "error"


@pytest.mark.parametrize("hidden", [0, 65, 255])
def test_an_entropy_model_of_bad_size_is_refused(coded, hidden, tmp_path):
    data = _with_member(coded, lambda m: bytes([hidden]) + m[1:])
    with pytest.raises(ArchiveError, match="hidden units"):
        _decoded(data, tmp_path)


def test_more_components_than_a_slice_can_have_are_refused(tmp_path):
    archive = compress(Volume4D(np.random.default_rng(0).normal(100, 10, (2, 2, 1, 40))), "transform",
                       Config(step=1.0))

    def edit(manifest, members):
        manifest["slices"][0]["components"] = 40  # more than its 4 voxels: a side stream of 1,640 values
    with pytest.raises(ArchiveError, match="0 to 4 components"):
        _decoded(fuzzing.edited(to_bytes(archive), edit), tmp_path)


@pytest.fixture(scope="module")
def slabs() -> Archive:
    """Slabs of 2, 2 and 1 slices, of 9, 8, 8, 9 and 7 components."""
    return compress(phantom(shape=(13, 17, 5)), "transform", Config(step=40.0, slab=2))


def _edited(archive: Archive, edit) -> bytes:
    def change(manifest, members):
        edit(manifest["slices"], members)
    return fuzzing.edited(to_bytes(archive), change)


@pytest.mark.parametrize("edit, message", [
    (lambda s, m: s[1].update(slab_position=0), "slab_position must be one more"),
    (lambda s, m: s[2].update(slab_position=1), "slab_position must be 0"),
    (lambda s, m: s[3].pop("slab_position"), "as every entry, or none"),
    (lambda s, m: [e.pop("slab_position") for e in s[1:]], "as every entry, or none"),
    (lambda s, m: s[3].update(member="slices/0000.bin"), "slice 3 names member 'slices/0000.bin', not 'slices/0003"),
    (lambda s, m: s[1].update(components=10), "10 components, more than its slab's basis has"),
])
def test_slabs_named_wrongly_are_refused(slabs, tmp_path, edit, message):
    assert [(e["slab_position"], e["components"]) for e in slabs.manifest["slices"]] == [(0, 9), (1, 8), (0, 8), (1, 9),
                                                                                         (0, 7)]
    with pytest.raises(ArchiveError, match=message):
        _decoded(_edited(slabs, edit), tmp_path)


def test_a_slab_member_of_fewer_blocks_than_slices_is_refused(slabs, tmp_path):
    def edit(entries, members):  # slab 2–3 keeps only slice 2's block
        member = members["slices/0002.bin"]
        members["slices/0002.bin"] = member[:len(member) - 4 - len(_block(slabs, 3))]
        entries[2]["bytes"] = len(members["slices/0002.bin"])
    with pytest.raises(ArchiveError, match="its slab's member has 1 slices"):
        _decoded(_edited(slabs, edit), tmp_path)


def test_slices_of_fewer_voxels_than_volumes_keep_a_basis_each():
    data = np.random.default_rng(3).normal(500, 20, (2, 2, 4, 6)).astype(np.float32)
    archive = compress(Volume4D(data), "transform", Config(step=1.0, slab=4))
    assert len(archive.members) == 4 and all(e["slab_position"] == 0 for e in archive.manifest["slices"])


def test_a_bad_lane_count_is_refused(coded, tmp_path):
    member = coded.members["slices/0000.bin"]
    def size_at(at: int) -> int:
        return int(np.frombuffer(member, dtype="<u4", count=1, offset=at)[0])
    basis_at = Network.from_bytes(member)[1] + 4  # the network, K
    side_at = basis_at + 4 + size_at(basis_at) + 4  # the basis stream, the first block's size
    lanes_at = side_at + 4 + size_at(side_at) + 4 + 1  # the side stream, the coefficient stream's size, alphabet
    for lanes in (0, 1, 2**31, 2**32 - 1):
        data = _with_member(coded, lambda m, n=lanes: m[:lanes_at] + np.array([n], "<u4").tobytes() + m[lanes_at + 4:])
        with pytest.raises(ArchiveError, match="lane"):
            _decoded(data, tmp_path)


# --- command line ---------------------------------------------------------------------------------------


@pytest.fixture
def dwi_nifti(tmp_path):
    path = tmp_path / "dwi.nii.gz"
    write_volume(phantom(shape=(16, 14, 2)), path)
    return path


def test_cli_suggests_transform_for_dwi_and_takes_its_step(tmp_path, dwi_nifti):
    r = run_cli("compress", dwi_nifti, "-o", tmp_path / "a.sirz", "--progress", "none")
    assert r.returncode == 0, r.stderr
    assert "codec: transform" in r.stderr
    r = run_cli("compress", dwi_nifti, "-o", tmp_path / "b.sirz", "--codec", "transform", "--step", "20",
                "--progress", "none")
    assert r.returncode == 0, r.stderr
    for name in "ab":
        info = run_cli("info", tmp_path / f"{name}.sirz", "--json", block_torch=True)
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["codec"]["name"] == "transform"
    assert json.loads(info.stdout)["codec"]["config"]["step"] == 20.0


def test_cli_target_ratio(tmp_path):
    source, out = tmp_path / "dwi.nii.gz", tmp_path / "c.sirz"
    volume = dwi_phantom(shape=(24, 24, 2), directions=29, bvalues=(1000.0,), noise=0.02, seed=3)
    write_volume(volume, source)
    r = run_cli("compress", source, "-o", out, "--codec", "transform", "--target-ratio", "10", "--progress",
                "none")
    assert r.returncode == 0, r.stderr
    assert volume.data.size * 2 / out.stat().st_size == pytest.approx(10, rel=0.03)
    r = run_cli("decompress", out, "-o", tmp_path / "c.nii.gz", block_torch=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("flags", [["--step", "-1"], ["--step", "0"], ["--rounding", "0.9"],
                                   ["--max-components", "-1"], ["--context-units", "65"], ["--step", "nan"]])
def test_cli_bad_flags_are_exit_2_and_one_line(tmp_path, dwi_nifti, flags):
    r = run_cli("compress", dwi_nifti, "-o", tmp_path / "x.sirz", "--codec", "transform", *flags)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x.sirz").exists()


def test_the_library_picks_transform_for_diffusion_data_and_the_codec_of_given_settings():
    from SirenCompressLib import SirenConfig

    volume = dwi_phantom(shape=(12, 12, 1), directions=6, bvalues=(1000.0,), noise=0.02)
    assert compress(volume).manifest["codec"]["name"] == "transform"
    tiny = SirenConfig(layers=1, units=8, epochs=2, device="cpu")
    assert compress(volume, config=tiny).manifest["codec"]["name"] == "siren"
