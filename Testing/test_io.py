"""Reading and writing 4D images: round trips keep data, geometry, gradients; bad input is refused."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from conftest import assert_same_geometry, phantom
from SirenCompressLib import FrameIndex, Gradients, InputError, OutputError, Volume4D, read_volume, write_volume


def rotated(volume: Volume4D) -> Volume4D:
    """The volume with an oblique, positive-determinant IJK→RAS (as scanners write)."""
    c, s = np.cos(0.3), np.sin(0.3)
    volume.ijk_to_ras[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([2.0, 2.5, 3.0])
    return volume


@pytest.mark.parametrize("name", ["dwi.nii.gz", "dwi.nii", "dwi.nrrd"])
def test_round_trip_keeps_everything(tmp_path, name):
    original = rotated(phantom())
    write_volume(original, tmp_path / name)
    back = read_volume(tmp_path / name)
    assert_same_geometry(original, back)
    np.testing.assert_array_equal(original.data, back.data)


def test_nifti_finds_gradients_beside_it_and_writes_fsl_files(tmp_path):
    write_volume(phantom(), tmp_path / "dwi.nii.gz")
    assert {p.name for p in tmp_path.iterdir()} == {"dwi.nii.gz", "dwi.bval", "dwi.bvec"}
    assert np.loadtxt(tmp_path / "dwi.bvec").shape == (3, 15)
    assert read_volume(tmp_path / "dwi.nii.gz").gradients is not None


def test_explicit_gradient_files(tmp_path):
    write_volume(phantom(), tmp_path / "dwi.nii.gz")
    (tmp_path / "dwi.bval").rename(tmp_path / "other.bval")
    (tmp_path / "dwi.bvec").rename(tmp_path / "other.bvec")
    assert read_volume(tmp_path / "dwi.nii.gz").gradients is None  # none beside it: fMRI-like
    v = read_volume(tmp_path / "dwi.nii.gz", tmp_path / "other.bval", tmp_path / "other.bvec")
    assert v.gradients.bvals.size == 15


def test_cross_format_keeps_gradient_meaning(tmp_path):
    """NIfTI (FSL bvecs in voxel axes) → NRRD (measurement frame) → NIfTI keeps world directions."""
    original = rotated(phantom())
    write_volume(original, tmp_path / "a.nii.gz")
    write_volume(read_volume(tmp_path / "a.nii.gz"), tmp_path / "b.nrrd")
    nrrd_volume = read_volume(tmp_path / "b.nrrd")
    assert nrrd_volume.gradients.convention == "nrrd"
    write_volume(nrrd_volume, tmp_path / "c.nii.gz")
    back = read_volume(tmp_path / "c.nii.gz")
    assert_same_geometry(original, nrrd_volume)
    assert_same_geometry(original, back)
    np.testing.assert_allclose(back.gradients.bvecs, original.gradients.bvecs, atol=1e-6)


def test_nrrd_measurement_frame_is_applied(tmp_path):
    """A gradient along the frame's x axis, with a frame mapping x to world A, points anterior."""
    v = phantom()
    frame = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1.0]])  # columns: frame axes in RAS
    bvecs = np.tile([1.0, 0, 0], (v.shape[3], 1))
    v.gradients = Gradients(np.full(v.shape[3], 1000.0), bvecs, "nrrd", frame)
    write_volume(v, tmp_path / "mf.nrrd")
    back = read_volume(tmp_path / "mf.nrrd")
    np.testing.assert_allclose(back.gradients.directions_ras(back.ijk_to_ras), np.tile([0, 1.0, 0], (15, 1)),
                               atol=1e-9)


def test_nifti_scaling_is_kept(tmp_path):
    v = phantom()
    v.scaling = (0.5, 10.0)
    write_volume(v, tmp_path / "s.nii.gz")
    back = read_volume(tmp_path / "s.nii.gz")
    assert back.scaling == (0.5, 10.0)
    np.testing.assert_array_equal(back.data, v.data)


def test_fmri_like_nifti_without_gradients(tmp_path):
    data = np.random.default_rng(0).normal(100, 5, (8, 8, 3, 20)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "bold.nii.gz")
    v = read_volume(tmp_path / "bold.nii.gz")
    assert v.gradients is None and v.shape == (8, 8, 3, 20)


def _save(tmp_path, data, name="x.nii.gz"):
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("shape, message", [((8, 8, 3), "got a 3D image"), ((8, 8, 3, 2, 2), "got a 5D image")])
def test_wrong_dimensions(tmp_path, shape, message):
    with pytest.raises(InputError, match=message):
        read_volume(_save(tmp_path, np.zeros(shape, np.int16)))


def test_nan_voxels(tmp_path):
    data = np.ones((4, 4, 2, 3), np.float32)
    data[1, 1, 1, 1] = np.nan
    data[0, 0, 0, 0] = np.inf
    with pytest.raises(InputError, match="2 NaN or Inf voxels"):
        read_volume(_save(tmp_path, data))


def test_empty_file(tmp_path):
    (tmp_path / "e.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_volume(tmp_path / "e.nii.gz")


def test_garbage_file(tmp_path):
    (tmp_path / "g.nii").write_bytes(b"not an image at all" * 30)
    with pytest.raises(InputError, match="cannot read NIfTI"):
        read_volume(tmp_path / "g.nii")


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_volume(tmp_path / "absent.nii.gz")
    with pytest.raises(InputError, match="unsupported file type"):
        read_volume(tmp_path / "image.png")


def test_gradient_count_mismatch(tmp_path):
    write_volume(phantom(), tmp_path / "dwi.nii.gz")
    np.savetxt(tmp_path / "dwi.bval", np.zeros((1, 14)))
    with pytest.raises(InputError, match="15 volumes but .* 14 b-values"):
        read_volume(tmp_path / "dwi.nii.gz")


def test_half_of_the_gradients_missing(tmp_path):
    write_volume(phantom(), tmp_path / "dwi.nii.gz")
    (tmp_path / "dwi.bvec").unlink()
    with pytest.raises(InputError, match="missing .*dwi.bvec"):
        read_volume(tmp_path / "dwi.nii.gz")


def test_existing_output_needs_force(tmp_path):
    v = phantom()
    write_volume(v, tmp_path / "d.nrrd")
    with pytest.raises(OutputError, match="exists already"):
        write_volume(v, tmp_path / "d.nrrd")
    write_volume(v, tmp_path / "d.nrrd", force=True)


def test_failed_write_leaves_nothing(tmp_path):
    v = phantom()
    v.scaling = (2.0, 0.0)  # NRRD cannot store it: refused after the temporary file was opened
    with pytest.raises(InputError):
        write_volume(v, tmp_path / "d.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_nrrd_keeps_the_sequence_frame_index(tmp_path):
    data = np.random.default_rng(0).normal(100, 5, (6, 5, 4, 3)).astype(np.float32)
    v = Volume4D(data, np.diag([1.5, 1.5, 3.0, 1.0]), frames=FrameIndex("time", "s", ["0", "2.5", "5"]))
    write_volume(v, tmp_path / "f.seq.nrrd")
    back = read_volume(tmp_path / "f.seq.nrrd")
    assert back.frames == v.frames and back.gradients is None
    np.testing.assert_array_equal(back.data, data)
