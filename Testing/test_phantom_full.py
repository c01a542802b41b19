"""The whole-brain DWI phantom (`brain_phantom`), small sizes of the same function, and its CLI flags."""

import importlib.util

import numpy as np
import pytest

from conftest import run_cli
from SirenCompressLib.errors import InputError
from SirenCompressLib.io import read_volume
from SirenCompressLib.phantom import brain_phantom, dwi_phantom, named_phantom

SMALL = dict(shape=(32, 32, 8), directions=5, b0s=2)  # 12 volumes


@pytest.fixture(scope="module")
def small():
    return brain_phantom(**SMALL, snr=20.0, seed=1)


def test_shapes_gradients_and_geometry(small):
    volume = small.volume
    assert volume.shape == (32, 32, 8, 12) and volume.data.dtype == np.int16
    assert small.clean.shape == volume.shape and small.clean.dtype == np.float32
    bvals, bvecs = volume.gradients.bvals, volume.gradients.bvecs
    assert sorted(np.unique(bvals, return_counts=True)[1]) == [2, 5, 5]
    assert set(bvals) == {0.0, 1000.0, 2000.0} and bvals[0] == 0 and bvals[-1] == 0
    np.testing.assert_allclose(np.linalg.norm(bvecs[bvals > 0], axis=1), 1)
    assert not bvecs[bvals == 0].any()
    assert len({tuple(g) for g in bvecs[bvals > 0]}) == 10  # the shells do not share directions
    np.testing.assert_allclose(np.diag(volume.ijk_to_ras)[:3], [-6.5, 6.5, 18.0])  # 208×208×144 mm
    background, brain = small.clean[..., 0] == 0, small.clean[..., 0] > 0
    assert 0.3 < background.mean() < 0.8 and small.clean[brain, 0].min() >= 0


def test_tissue_contrast(small):
    """b=0: CSF (the brightest voxels) brighter than tissue; b=2000 attenuates more than b=1000, and most
    where b=0 is brightest (free water)."""
    clean, bvals = small.clean, small.volume.gradients.bvals
    b0 = clean[..., bvals == 0].mean(axis=-1)
    brain = b0 > 0
    assert b0.max() > 2.5 * np.median(b0[brain])
    attenuation = {b: clean[..., bvals == b].mean(axis=-1)[brain] / b0[brain] for b in (1000.0, 2000.0)}
    assert 0.1 < np.median(attenuation[2000.0]) < np.median(attenuation[1000.0]) < 0.6
    assert attenuation[2000.0][np.argmax(b0[brain])] < 0.5 * np.median(attenuation[2000.0])


def test_noise_level_is_the_requested_one(small):
    """σ from the background (Rayleigh: E[M²] = 2σ²) and from bright voxels (noisy − clean) ≈ s0 / snr."""
    data, clean = small.volume.data.astype(np.float64), small.clean
    assert small.sigma == pytest.approx(1000.0 / 20.0)
    background = clean == 0
    assert np.sqrt(np.mean(data[background] ** 2) / 2) == pytest.approx(small.sigma, rel=0.03)
    bright = clean > 10 * small.sigma
    assert np.std(data[bright] - clean[bright]) == pytest.approx(small.sigma, rel=0.05)


def test_one_seed_one_phantom(small):
    again = brain_phantom(**SMALL, snr=20.0, seed=1)
    np.testing.assert_array_equal(again.volume.data, small.volume.data)
    np.testing.assert_array_equal(again.clean, small.clean)
    other = brain_phantom(**SMALL, snr=20.0, seed=2)
    assert not np.array_equal(other.volume.data, small.volume.data)
    assert not np.array_equal(other.clean, small.clean)  # the fibre fields differ too
    np.testing.assert_array_equal(other.clean[..., 0], small.clean[..., 0])  # the anatomy does not


def test_float_output_and_bad_sizes():
    phantom = brain_phantom((8, 8, 2), directions=3, b0s=1, dtype="float32")
    assert phantom.volume.data.dtype == np.float32 and phantom.volume.shape == (8, 8, 2, 7)
    with pytest.raises(InputError, match="positive"):
        brain_phantom((8, 0, 2))


def test_needs_nilearn(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nilearn" else find_spec(name))
    with pytest.raises(InputError, match="pip install nilearn"):
        brain_phantom((8, 8, 2))


def test_the_small_named_phantom_is_the_former_bench_phantom():
    volume, clean, name = named_phantom("small")
    options = dict(shape=(64, 64, 4), directions=30, bvalues=(1000.0, 2000.0))
    np.testing.assert_array_equal(volume.data, dwi_phantom(noise=0.02, **options).data)
    np.testing.assert_array_equal(clean, dwi_phantom(noise=0.0, **options).data)
    assert name.startswith("small DWI phantom 64×64×4 × 61 volumes")


def test_sample_writes_a_phantom(tmp_path):
    folder = tmp_path / "out"
    args = ["sample", folder, "--phantom", "full", "--shape", "16", "16", "4", "--snr", "30", "--seed", "3"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["phantom_full.bval", "phantom_full.bvec",
                                                       "phantom_full.nii.gz"]
    written = read_volume(folder / "phantom_full.nii.gz")
    expected = brain_phantom((16, 16, 4), snr=30.0, seed=3).volume
    np.testing.assert_array_equal(written.data, expected.data)
    np.testing.assert_allclose(written.gradients.bvals, expected.gradients.bvals)
    assert run_cli(*args).returncode == 2  # exists already
    assert run_cli(*args, "--force").returncode == 0


def test_phantom_flags_need_a_phantom(tmp_path):
    r = run_cli("sample", tmp_path, "--snr", "30")
    assert r.returncode == 2 and "apply to a --phantom" in r.stderr


def test_sample_copies_the_multishell_sample(tmp_path):
    r = run_cli("sample", tmp_path, "--real", "multishell_b6k_max")
    assert r.returncode == 0, r.stderr
    volume = read_volume(tmp_path / "multishell_b6k_max.nii.gz")
    assert volume.shape == (104, 104, 2, 114) and volume.gradients.bvals.max() == 6000
    r = run_cli("sample", tmp_path, "--real", "b1k_b2k", "--phantom", "full")
    assert r.returncode == 2 and "not both" in r.stderr
