"""The siren codec and the compress/decompress pipeline, through the library API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FAST, assert_same_geometry, phantom
from SirenCompressLib import (
    ArchiveError,
    FrameIndex,
    InputError,
    SirenConfig,
    compare,
    compress,
    decompress,
    network,
    quantize,
    read_archive,
    write_archive,
)
from SirenCompressLib.codecs import siren
from SirenCompressLib.nets import Siren


def test_round_trip_keeps_geometry_and_reports_true_metrics(tmp_path):
    volume = phantom()
    archive = compress(volume, config=FAST)
    write_archive(archive, tmp_path / "p.sirz")
    decoded = decompress(read_archive(tmp_path / "p.sirz"))
    assert_same_geometry(volume, decoded)
    measured = compare(volume.data, decoded.data)
    for stored, actual in zip(archive.manifest["slices"], measured.slices):
        assert stored["metrics"]["psnr"] == pytest.approx(actual.psnr, abs=1e-9)
        assert stored["metrics"]["ssim"] == pytest.approx(actual.ssim, abs=1e-9)
    assert archive.manifest["metrics"]["psnr"] == pytest.approx(measured.whole.psnr, abs=1e-9)
    assert measured.whole.psnr > 30  # 60 epochs of a small net fit the phantom roughly


def test_decoded_values_are_clamped_and_of_the_input_dtype():
    volume = phantom()
    decoded = decompress(compress(volume, config=SirenConfig(layers=1, units=8, epochs=2, device="cpu")))
    assert decoded.data.dtype == np.int16
    assert decoded.data.min() >= volume.data.min() and decoded.data.max() <= volume.data.max()


def test_constant_slice_is_stored_without_a_network():
    volume = phantom()
    volume.data[:, :, 1] = 0
    archive = compress(volume, config=FAST)
    entry = archive.manifest["slices"][1]
    assert entry["kind"] == "constant" and entry["member"] is None and entry["bytes"] == 0
    assert len(archive.members) == 2
    assert entry["metrics"]["psnr"] is None  # infinite: decoded exactly
    np.testing.assert_array_equal(decompress(archive).data[:, :, 1], 0)


def test_float_data_and_normalisation_are_exact_in_the_manifest():
    volume = phantom(dtype="float32")
    volume.data *= np.float32(1.37)
    archive = compress(volume, config=FAST)
    entry = archive.manifest["slices"][0]
    z0 = volume.data[:, :, 0].reshape(-1, volume.shape[3])
    np.testing.assert_array_equal(np.float32(entry["min"]), z0.min(axis=0))
    np.testing.assert_array_equal(np.float32(entry["max"]), z0.max(axis=0))
    assert decompress(archive).data.dtype == np.float32


def test_numpy_decoder_matches_the_torch_network():
    torch.manual_seed(0)
    model = Siren(2, 5, layers=3, units=16, w0=30.0, final_activation="relu")
    arrays = [p.detach().half().numpy() for p in model.parameters()]
    coords = network.grid(7, 9)
    with torch.no_grad():
        for p, a in zip(model.parameters(), arrays):
            p.copy_(torch.from_numpy(a.astype(np.float32)))
        expected = model(torch.from_numpy(coords)).numpy()
    np.testing.assert_allclose(siren.forward(arrays, coords, 30.0, "relu", ["sine"] * 3), expected, atol=1e-4)


def test_grid_spans_minus_one_to_one_inclusive():
    g = network.grid(4, 3)
    assert g.shape == (12, 2)
    assert g[0].tolist() == [-1, -1] and g[-1].tolist() == [1, 1]
    assert g[1].tolist() == [-1, 0]  # x varies slowest, as in a C-order (x, y) reshape


def test_weights_pack_and_unpack_exactly():
    config = SirenConfig(layers=2, units=6)
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=s).astype(np.float16) for out, inp in siren.layer_shapes(config, 4)
              for s in ((out, inp), (out,))]
    back = network.unpack_weights(network.pack_weights(arrays), siren.layer_shapes(config, 4))
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bits", [8, 6, 3])
@pytest.mark.parametrize("coder", siren.CODERS)
def test_quantised_weights_unpack_to_the_dequantized_values(bits, coder):
    shapes = siren.layer_shapes(SirenConfig(layers=2, units=6), 4)
    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=s).astype(np.float32) for out, inp in shapes for s in ((out, inp), (out,))]
    back = network.unpack_weights(network.pack_weights(arrays, bits, coder), shapes, bits, coder)
    for i, (a, b) in enumerate(zip(arrays, back)):
        expected = quantize.dequantize(*quantize.quantize(a, bits)) if i % 2 == 0 else a.astype(np.float16)
        np.testing.assert_array_equal(b, expected.astype(np.float32))
    with pytest.raises(ArchiveError, match="expected"):
        network.unpack_weights(network.pack_weights(arrays, bits), shapes, 16)  # wrong setting: lengths differ


def test_rans_codes_trained_size_weights_smaller_than_lzma():
    """Gaussian 8-bit weights of a 3×128 network: the adaptive coder beats LZMA on the same symbols (by ~1 %)."""
    shapes = siren.layer_shapes(SirenConfig(layers=3, units=128, basis=8), 20)
    rng = np.random.default_rng(2)
    arrays = [rng.normal(size=s).astype(np.float32) for out, inp in shapes for s in ((out, inp), (out,))]
    assert len(network.pack_weights(arrays, 8, "rans")) < 0.995 * len(network.pack_weights(arrays, 8, "lzma"))


@pytest.mark.parametrize("cut", [0, 3, 100, -2])
def test_truncated_rans_weights_are_an_archive_error(cut):
    shapes = siren.layer_shapes(SirenConfig(layers=2, units=16), 4)
    rng = np.random.default_rng(3)
    arrays = [rng.normal(size=s).astype(np.float32) for out, inp in shapes for s in ((out, inp), (out,))]
    member = network.pack_weights(arrays, 6, "rans")
    with pytest.raises(ArchiveError):
        network.unpack_weights(member[:cut], shapes, 6, "rans")


def test_rans_needs_integer_weights():
    with pytest.raises(InputError, match="integer weights"):
        SirenConfig(weight_bits=16, coder="rans")


def test_eight_bit_weights_with_qat_halve_the_size():
    volume = phantom()
    fp16 = compress(volume, config=FAST)
    int8 = compress(volume, config=SirenConfig(**{**FAST.to_json(), "weight_bits": 8, "qat_epochs": 20}))
    assert sum(map(len, int8.members.values())) < 0.6 * sum(map(len, fp16.members.values()))
    assert int8.manifest["metrics"]["psnr"] > fp16.manifest["metrics"]["psnr"] - 3
    decoded = decompress(int8)
    assert compare(volume.data, decoded.data).whole.psnr == pytest.approx(int8.manifest["metrics"]["psnr"])


def test_same_seed_same_archive():
    volume = phantom()
    config = SirenConfig(layers=1, units=16, epochs=5, device="cpu", seed=7)
    assert compress(volume, config=config).members == compress(volume, config=config).members


def test_best_stored_checkpoint_is_kept():
    """With a learning rate that makes training worse later on, the earlier, better weights are kept."""
    psnrs = []
    config = SirenConfig(layers=2, units=32, epochs=200, lr=0.5, check_every=10, device="cpu")
    archive = compress(phantom(shape=(16, 14, 1)), config=config,
                       progress=lambda e: psnrs.append(e["psnr"]) if e["event"] == "epoch" else None)
    assert psnrs[-1] < max(psnrs) - 1  # the last weights are clearly worse than the best ones
    assert archive.manifest["slices"][0]["metrics"]["psnr"] == pytest.approx(max(psnrs), abs=0.2)


@pytest.mark.parametrize("batch", [1, 3])
def test_progress_events(batch):
    events = []
    compress(phantom(), config=SirenConfig(layers=1, units=8, epochs=20, check_every=10, device="cpu",
                                           batch_slices=batch), progress=events.append)
    assert events[0] == {"event": "start", "slices": 3, "networks": 3, "epochs": 20, "device": "cpu",
                         "batch_size": batch}
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [10, 20] * (3 // batch)
    assert [e["slice"] for e in epochs] == [z for z in range(0, 3, batch) for _ in (10, 20)]
    assert epochs[-1]["eta_s"] == 0
    assert [e["slice"] for e in events if e["event"] == "slice"] == [0, 1, 2]


@pytest.mark.parametrize("bad", [dict(layers=0), dict(epochs=0), dict(lr=-1.0), dict(final_activation="tanh"),
                                 dict(device="tpu")])
def test_bad_settings(bad):
    with pytest.raises(InputError):
        SirenConfig(**bad)


def test_cuda_requested_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the error is for machines without one")
    with pytest.raises(InputError, match="no CUDA GPU"):
        compress(phantom(), config=SirenConfig(device="cuda", epochs=1))


def test_frame_index_travels_through_the_archive():
    volume = phantom()
    volume.gradients = None
    volume.frames = FrameIndex("time", "s", [str(2 * t) for t in range(15)])
    assert decompress(compress(volume, config=SirenConfig(layers=1, units=8, epochs=2))).frames == volume.frames


def test_low_rank_output_round_trip():
    """A q-space basis of K vectors: smaller head, decoded exactly as the manifest says."""
    volume = phantom()
    config = SirenConfig(**{**FAST.to_json(), "basis": 4})
    archive = compress(volume, config=config)
    assert siren.layer_shapes(config, 15)[-2:] == [(4, 64), (15, 4)]
    decoded = decompress(archive)
    assert compare(volume.data, decoded.data).whole.psnr == pytest.approx(archive.manifest["metrics"]["psnr"])
    assert archive.manifest["metrics"]["psnr"] > 25


def test_low_rank_numpy_decoder_matches_torch():
    torch.manual_seed(0)
    model = Siren(2, 9, layers=2, units=16, w0=30.0, basis=3)
    model.set_basis(torch.rand(50, 9))
    arrays = [p.detach().numpy() for p in model.parameters()]
    coords = network.grid(5, 6)
    with torch.no_grad():
        expected = model(torch.from_numpy(coords)).numpy()
    np.testing.assert_allclose(siren.forward(arrays, coords, 30.0, "identity", ["sine"] * 2), expected, atol=1e-5)


def test_compact_preset_round_trip():
    """The compact preset's parts together: 8-bit weights, QAT, q-space basis, cosine decay."""
    from SirenCompressLib.codecs.siren import PRESETS

    volume = phantom()
    config = SirenConfig(**{**PRESETS["compact"].to_json(), "units": 64, "epochs": 80, "lr": 3e-3, "qat_epochs": 10,
                            "basis": 6, "device": "cpu"})
    archive = compress(volume, config=config)
    assert compare(volume.data, decompress(archive).data).whole.psnr == pytest.approx(
        archive.manifest["metrics"]["psnr"])
    assert archive.manifest["metrics"]["psnr"] > 25


@pytest.mark.parametrize("activation", ["relu", "tanh", "sine-relu"])
def test_paper_baseline_networks_decode_like_torch(activation):
    torch.manual_seed(0)
    model = Siren(2, 5, layers=3, units=16, w0=30.0, activation=activation)
    arrays = [p.detach().numpy() for p in model.parameters()]
    coords = network.grid(7, 9)
    with torch.no_grad():
        expected = model(torch.from_numpy(coords)).numpy()
    hidden = network.layer_activations(activation, 3)
    np.testing.assert_allclose(siren.forward(arrays, coords, 30.0, "identity", hidden), expected, atol=1e-5)
    archive = compress(phantom(), config=SirenConfig(layers=2, units=16, epochs=5, activation=activation))
    assert decompress(archive).shape == phantom().shape


def test_slices_trained_together_train_as_they_would_alone():
    """vmap over stacked networks: a batch of 3 slices gives each slice the network it gets alone."""
    volume = phantom()
    alone = compress(volume, config=SirenConfig(**{**FAST.to_json(), "batch_slices": 1, "epochs": 40}))
    events = []
    together = compress(volume, config=SirenConfig(**{**FAST.to_json(), "batch_slices": 3, "epochs": 40}),
                        progress=events.append)
    assert {e["batch_size"] for e in events if e["event"] == "epoch"} == {3}
    for a, b in zip(alone.manifest["slices"], together.manifest["slices"]):
        assert b["metrics"]["psnr"] == pytest.approx(a["metrics"]["psnr"], abs=1e-3)
        assert abs(b["bytes"] - a["bytes"]) < 0.01 * a["bytes"]
