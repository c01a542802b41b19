"""The paper's SIREN-3D variant: one network for the whole volume behind the same interface."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FAST, assert_same_geometry, phantom, run_cli
from SirenCompressLib import Volume4D, compress, decompress, network, read_archive, read_volume
from SirenCompressLib.archive import to_bytes
from SirenCompressLib.codecs import siren, siren3d
from SirenCompressLib.rate import config_for_ratio

CONFIG = siren3d.Config(**{**FAST.to_json(), "epochs": 150, "weight_bits": 8, "coder": "rans", "basis": 6})


def test_one_network_shared_by_every_slice():
    volume = phantom()
    archive = compress(volume, "siren3d", CONFIG)
    slices = archive.manifest["slices"]
    assert [s["member"] for s in slices] == ["slices/0000.bin"] * 3
    assert [s["bytes"] for s in slices] == [len(archive.members["slices/0000.bin"]), 0, 0]
    assert list(archive.members) == ["slices/0000.bin"]
    decoded = decompress(archive)
    assert_same_geometry(decoded, volume)
    assert archive.manifest["metrics"]["psnr"] > 25


def test_slices_decode_like_the_whole_network():
    """Decoding slice by slice evaluates the same (x, y, z) network as one pass over the whole grid."""
    volume = phantom()
    archive = compress(volume, "siren3d", CONFIG)
    entry, member = archive.manifest["slices"][0], archive.members["slices/0000.bin"]
    nx, ny, nz, nv = volume.shape
    whole = siren.decode_network(CONFIG, entry, member, network.grid(nx, ny, nz), nv).reshape(nx, ny, nz, nv)
    lo, hi = archive.manifest["value_range"]
    np.testing.assert_array_equal(decompress(archive).data, np.rint(np.clip(whole, lo, hi)).astype(np.int16))


def test_constant_volume_needs_no_network():
    volume = phantom()
    constant = Volume4D(np.full(volume.shape, 7, dtype=np.int16), volume.ijk_to_ras, volume.gradients)
    archive = compress(constant, "siren3d", CONFIG)
    assert not archive.members
    assert np.all(decompress(archive).data == 7)


def test_target_ratio_for_one_network():
    volume = phantom(shape=(32, 32, 3), directions=30, bvalues=(1000.0,))
    config = config_for_ratio(CONFIG, volume, 8.0, "siren3d")
    reached = volume.data.size * 2 / len(to_bytes(compress(volume, "siren3d", config)))
    assert reached == pytest.approx(8.0, rel=0.10)
    assert config.units > config_for_ratio(CONFIG, volume, 8.0, "siren").units  # one network gets the budget


def test_cli_siren3d_round_trip_without_torch(phantom_nifti, tmp_path):
    archive, decoded = tmp_path / "p.sirz", tmp_path / "d.nii.gz"
    args = ["--layers", "2", "--units", "32", "--epochs", "20", "--device", "cpu", "--progress", "none"]
    assert run_cli("compress", phantom_nifti, "-o", archive, "--codec", "siren3d", *args).returncode == 0
    assert read_archive(archive).manifest["codec"]["name"] == "siren3d"
    result = run_cli("decompress", archive, "-o", decoded, block_torch=True)
    assert result.returncode == 0, result.stderr
    assert_same_geometry(read_volume(decoded), read_volume(phantom_nifti))


def test_cli_target_psnr_stops_the_whole_volume_network_at_the_target(phantom_nifti, tmp_path):
    """One probe (units and bits given) trains the network until it reaches the target; the archive lands there."""
    archive = tmp_path / "p.sirz"
    args = ["--layers", "2", "--units", "32", "--weight-bits", "8", "--epochs", "400", "--qat-epochs", "0",
            "--lr", "3e-3", "--device", "cpu", "--progress", "none"]
    result = run_cli("compress", phantom_nifti, "-o", archive, "--codec", "siren3d", "--target-psnr", "26", *args)
    assert result.returncode == 0, result.stderr
    manifest = read_archive(archive).manifest
    assert manifest["codec"]["config"]["target_psnr"] == 26.0
    assert 26.0 <= manifest["metrics"]["psnr"] < 27.0
