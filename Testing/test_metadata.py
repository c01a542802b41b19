"""What gives an image its meaning survives compress → decompress: header fields, geometry in every form,
timing, diffusion encodings in every form, through every codec and both output formats. Each input is a small
file written the way nibabel, pynrrd or SimpleITK write them."""

from __future__ import annotations

import json

import nibabel as nib
import nrrd
import numpy as np
import pytest

from conftest import FAST, leftovers, phantom, run_cli
from SirenCompressLib import read_volume, write_volume
from SirenCompressLib.archive import read_archive, write_archive
from SirenCompressLib.codecs import fmri, lossless, siren3d
from SirenCompressLib.io import diffusion_hint, unstorable
from SirenCompressLib.pipeline import compress, decompress

TINY = {
    "siren": FAST.__class__(**{**FAST.to_json(), "epochs": 3, "units": 16}),
    "siren3d": siren3d.Config(**{**FAST.to_json(), "epochs": 3, "units": 16}),
    "fmri": fmri.Config(units=16, layers=2, epochs=3, qat_epochs=1, components=3, device="cpu"),
    "lossless": lossless.Config(),
}
SCANNER = np.array([[2.0, 0.1, 0, -40], [-0.1, 2.0, 0, -50], [0, 0, 3.0, 7], [0, 0, 0, 1]])
TEMPLATE = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 3.0, -72], [0, 0, 0, 1]])
KEPT_NIFTI = ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
              "qoffset_z", "srow_x", "srow_y", "srow_z", "pixdim", "xyzt_units", "toffset", "slice_duration",
              "slice_code", "slice_start", "slice_end", "dim_info", "intent_code", "intent_name", "intent_p1",
              "descrip", "aux_file", "cal_min", "cal_max")


def bold_nifti(path, shape=(8, 7, 4, 12), version=1):
    """A BOLD run as a scanner pipeline writes it: TR 2.5 s, slice timing, qform (scanner) and sform (MNI)."""
    data = np.random.default_rng(0).normal(1000, 20, shape).astype(np.int16)
    img = (nib.Nifti2Image if version == 2 else nib.Nifti1Image)(data, None)
    h = img.header
    h.set_qform(SCANNER, code=1)
    h.set_sform(TEMPLATE, code=4)
    h.set_xyzt_units("mm", "sec")
    h["pixdim"][4] = 2.5
    h["toffset"] = 1.25
    h.set_dim_info(freq=0, phase=1, slice=2)
    h["slice_code"], h["slice_duration"], h["slice_start"], h["slice_end"] = 1, 0.6, 0, shape[2] - 1
    h["intent_code"], h["intent_name"], h["intent_p1"] = 3, b"t-stat", 21.0
    h["descrip"], h["aux_file"] = b"task-rest run-1", b"lut.txt"
    h["cal_min"], h["cal_max"] = 900.0, 1100.0
    h.extensions.append(nib.nifti1.Nifti1Extension(6, b"some comment of the scanner"))
    img.to_filename(str(path))
    return data


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """The BOLD NIfTI through every codec, as decoded volumes."""
    folder = tmp_path_factory.mktemp("bold")
    bold_nifti(folder / "bold.nii.gz")
    volume = read_volume(folder / "bold.nii.gz")
    out = {}
    for codec, config in TINY.items():
        path = folder / f"{codec}.sirz"
        write_archive(compress(volume, codec, config), path)
        out[codec] = decompress(read_archive(path))
    return folder, out


@pytest.mark.parametrize("codec", list(TINY))
def test_nifti_header_survives_every_codec(archives, tmp_path, codec):
    folder, decoded = archives
    write_volume(decoded[codec], tmp_path / "back.nii.gz")
    original, back = nib.load(str(folder / "bold.nii.gz")).header, nib.load(str(tmp_path / "back.nii.gz")).header
    for name in KEPT_NIFTI:
        assert np.array_equal(back[name], original[name]), name
    assert back.get_value_label("qform_code") == "scanner" and back.get_value_label("sform_code") == "mni"
    np.testing.assert_allclose(back.get_qform(), SCANNER, atol=1e-5)
    np.testing.assert_allclose(back.get_sform(), TEMPLATE, atol=1e-5)
    assert [(e.get_code(), e.get_content()) for e in back.extensions] == [(6, b"some comment of the scanner")]
    assert back.get_zooms()[3] == 2.5


@pytest.mark.parametrize("codec", ["lossless", "fmri"])
def test_nifti_timing_reaches_nrrd_and_losses_are_named(archives, tmp_path, codec):
    _, decoded = archives
    volume = decoded[codec]
    write_volume(volume, tmp_path / "back.nrrd")
    back = read_volume(tmp_path / "back.nrrd")
    assert back.frames.name == "time" and back.frames.unit == "s"
    assert back.frames.values[:3] == ["1.25", "3.75", "6.25"]
    np.testing.assert_allclose(back.ijk_to_ras, TEMPLATE, atol=1e-5)  # the sform, as nibabel's affine
    lost = " ".join(unstorable(volume.header, volume.frames, "nrrd"))
    for what in ("qform/sform", "slice timing", "intent", "description", "cal_min", "extension"):
        assert what in lost


def test_cli_decompress_names_what_nrrd_cannot_hold_and_info_lists_what_is_kept(tmp_path):
    bold_nifti(tmp_path / "bold.nii.gz")
    assert run_cli("compress", tmp_path / "bold.nii.gz", "-o", tmp_path / "a.sirz", "--codec", "lossless",
                   "--progress", "none").returncode == 0
    done = run_cli("decompress", tmp_path / "a.sirz", "-o", tmp_path / "a.nrrd")
    assert done.returncode == 0
    notes = [line for line in done.stderr.splitlines() if line]
    assert len(notes) == 1 and "NRRD cannot hold" in notes[0] and "slice timing" in notes[0]
    info = run_cli("info", tmp_path / "a.sirz")
    assert "NIfTI-1, qform scanner (code 1), sform MNI (code 4)" in info.stdout
    assert "TR 2.5 s" in info.stdout and "slice timing" in info.stdout
    assert "NRRD output cannot hold" in info.stdout
    as_json = json.loads(run_cli("info", tmp_path / "a.sirz", "--json").stdout)
    assert as_json["header"]["nifti"]["fields"]["sform_code"] == 4
    assert as_json["frames"]["unit"] == "s"


def test_nifti2_is_kept_and_written_when_nifti1_cannot_hold_the_shape(tmp_path):
    bold_nifti(tmp_path / "two.nii", version=2)
    back = decompress(compress(read_volume(tmp_path / "two.nii"), "lossless"))
    write_volume(back, tmp_path / "back.nii")
    assert isinstance(nib.load(str(tmp_path / "back.nii")), nib.Nifti2Image)
    long = np.zeros((40000, 1, 1, 2), dtype=np.uint8)
    long[::7] = 3
    nib.Nifti2Image(long, np.eye(4)).to_filename(str(tmp_path / "long.nii"))
    back = decompress(compress(read_volume(tmp_path / "long.nii"), "lossless"))
    back.header.clear()  # as if it came from elsewhere: the writer must still choose NIfTI-2
    write_volume(back, tmp_path / "long-back.nii")
    loaded = nib.load(str(tmp_path / "long-back.nii"))
    assert isinstance(loaded, nib.Nifti2Image)
    np.testing.assert_array_equal(np.asarray(loaded.dataobj), long)


def test_nifti_spatial_units_are_millimetres_inside(tmp_path):
    data = np.arange(2 * 3 * 2 * 2, dtype=np.int16).reshape(2, 3, 2, 2)
    img = nib.Nifti1Image(data, np.diag([0.002, 0.002, 0.003, 1]))
    img.header.set_xyzt_units("meter", "sec")
    img.to_filename(str(tmp_path / "m.nii"))
    volume = read_volume(tmp_path / "m.nii")
    np.testing.assert_allclose(np.diag(volume.ijk_to_ras)[:3], [2, 2, 3])
    write_volume(decompress(compress(volume, "lossless")), tmp_path / "back.nii")
    back = nib.load(str(tmp_path / "back.nii")).header
    assert back.get_xyzt_units()[0] == "meter"
    np.testing.assert_allclose(back.get_zooms()[:3], [0.002, 0.002, 0.003])


def test_simpleitk_time_series_keeps_its_time_spacing(tmp_path):
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK is an optional dependency (the motion extra)")
    data = np.random.default_rng(1).integers(0, 500, (6, 5, 4, 3), dtype=np.int16)  # (t, z, y, x) for ITK
    image = sitk.GetImageFromArray(data, isVector=False)
    image.SetSpacing((2.0, 2.0, 3.0, 0.8))
    sitk.WriteImage(image, str(tmp_path / "itk.nii.gz"))
    volume = read_volume(tmp_path / "itk.nii.gz")
    assert volume.frames.values[:2] == ["0", "0.8"]
    write_volume(decompress(compress(volume, "lossless")), tmp_path / "back.nii.gz")
    original = sitk.ReadImage(str(tmp_path / "itk.nii.gz"))
    back = sitk.ReadImage(str(tmp_path / "back.nii.gz"))
    assert back.GetSpacing() == original.GetSpacing() and back.GetDirection() == original.GetDirection()


def sequence_nrrd(path, times, axis=0):
    """A Slicer sequence (.seq.nrrd layout): frame times as the list axis' index values."""
    data = np.random.default_rng(2).integers(0, 100, (len(times), 6, 5, 3), dtype=np.int16)
    header = {"space": "right-anterior-superior", "kinds": ["list", "domain", "domain", "domain"],
              "space directions": np.array([[np.nan] * 3, [1.5, 0, 0], [0, 1.5, 0], [0, 0, 4.0]]),
              "space origin": np.array([1.0, 2.0, 3.0]), "labels": ["time", "", "", ""],
              "units": ["s", "", "", ""], "axis 0 index values": " ".join(map(str, times)),
              "content": "resting state", "DataNodeClassName": "vtkMRMLScalarVolumeNode"}
    if axis:
        data = np.moveaxis(data, 0, axis)
        for key in ("kinds", "labels", "units"):
            header[key] = list(np.roll(header[key], axis))
        header["space directions"] = np.roll(header["space directions"], axis, axis=0)
        header[f"axis {axis} index values"] = header.pop("axis 0 index values")
    nrrd.write(str(path), data, header)


def test_nrrd_frame_times_reach_nifti(tmp_path):
    sequence_nrrd(tmp_path / "seq.nrrd", [0, 2, 4, 6, 8])
    volume = decompress(compress(read_volume(tmp_path / "seq.nrrd"), "lossless"))
    write_volume(volume, tmp_path / "seq.nii.gz")
    header = nib.load(str(tmp_path / "seq.nii.gz")).header
    assert header.get_zooms()[3] == 2.0 and header.get_xyzt_units()[1] == "sec"
    assert read_volume(tmp_path / "seq.nii.gz").frames.values == ["0", "2", "4", "6", "8"]
    lost = unstorable(volume.header, volume.frames, "nifti")
    assert any("content" in item for item in lost) and any("key/value" in item for item in lost)


def test_uneven_frame_times_are_reported_for_nifti(tmp_path):
    sequence_nrrd(tmp_path / "seq.nrrd", [0, 1, 3, 7])
    volume = read_volume(tmp_path / "seq.nrrd")
    assert any("frame index 'time'" in item for item in unstorable(volume.header, volume.frames, "nifti"))


@pytest.mark.parametrize("axis", [0, 3])
def test_nrrd_header_survives_any_axis_order(tmp_path, axis):
    sequence_nrrd(tmp_path / "seq.nrrd", [0, 2, 4, 6], axis=axis)
    original_data, original = nrrd.read(str(tmp_path / "seq.nrrd"))
    write_volume(decompress(compress(read_volume(tmp_path / "seq.nrrd"), "lossless")), tmp_path / "back.nrrd")
    data, back = nrrd.read(str(tmp_path / "back.nrrd"))
    np.testing.assert_array_equal(data, original_data)
    for key in ("space", "kinds", "labels", "units", "content", "DataNodeClassName", f"axis {axis} index values"):
        assert back[key] == original[key], key
    np.testing.assert_allclose(back["space directions"], original["space directions"])
    np.testing.assert_allclose(back["space origin"], original["space origin"])


def test_nrrd_spacings_and_space_units(tmp_path):
    data = np.zeros((4, 3, 2, 5), dtype=np.uint8)
    nrrd.write(str(tmp_path / "s.nrrd"), data, {"spacings": [0.5, 0.5, 2.0, np.nan],
                                                 "kinds": ["domain", "domain", "domain", "list"]})
    np.testing.assert_allclose(read_volume(tmp_path / "s.nrrd").ijk_to_ras, np.diag([-0.5, -0.5, 2.0, 1.0]))
    nrrd.write(str(tmp_path / "m.nrrd"), data, {"space": "left-anterior-superior", "space units": ["m"] * 3,
                                                 "space directions": [[0.001, 0, 0], [0, 0.001, 0], [0, 0, 0.002],
                                                                      [np.nan] * 3],
                                                 "kinds": ["domain", "domain", "domain", "list"]})
    np.testing.assert_allclose(read_volume(tmp_path / "m.nrrd").ijk_to_ras, np.diag([-1.0, 1.0, 2.0, 1.0]))


def dwi_arrays(volumes=7):
    p = phantom(shape=(6, 5, 2), directions=volumes - 1, bvalues=(1000.0,))
    return p


def test_nrrd_b_matrix_dwi_keeps_its_gradients(tmp_path):
    """NA-MIC DWI convention, B-matrix form: DWMRI_B-matrix_NNNN = bxx bxy bxz byy byz bzz, b = b0·trace."""
    p = dwi_arrays()
    g = p.gradients.in_convention("nrrd", p.ijk_to_ras)
    header = {"space": "left-posterior-superior", "kinds": ["domain", "domain", "domain", "list"],
              "space directions": [[2, 0, 0], [0, 2, 0], [0, 0, 3], [np.nan] * 3],
              "measurement frame": np.eye(3), "modality": "DWMRI", "DWMRI_b-value": "1000"}
    for i, (b, v) in enumerate(zip(g.bvals, g.bvecs)):
        m = np.outer(v, v) * b / 1000
        header[f"DWMRI_B-matrix_{i:04d}"] = " ".join(f"{x:.10g}" for x in m[np.triu_indices(3)])
    nrrd.write(str(tmp_path / "b.nrrd"), p.data, header)
    volume = read_volume(tmp_path / "b.nrrd")
    assert volume.gradients is not None
    np.testing.assert_allclose(volume.gradients.bvals, g.bvals, atol=1e-6)
    np.testing.assert_allclose(np.abs((volume.gradients.bvecs * g.bvecs).sum(1))[g.bvals > 0], 1, atol=1e-9)
    back = decompress(compress(volume, "lossless"))
    write_volume(back, tmp_path / "back.nrrd")
    _, written = nrrd.read(str(tmp_path / "back.nrrd"))
    assert all(written[k] == header[k] for k in header if k.startswith("DWMRI_B-matrix_"))
    assert not any(k.startswith("DWMRI_gradient_") for k in written)
    write_volume(back, tmp_path / "back.nii.gz")
    np.testing.assert_allclose(np.loadtxt(tmp_path / "back.bval"), g.bvals, atol=1e-3)


def test_nrrd_nex_repeats_expand(tmp_path):
    data = np.zeros((3, 3, 2, 4), dtype=np.int16)
    nrrd.write(str(tmp_path / "n.nrrd"), data, {
        "kinds": ["domain", "domain", "domain", "list"], "DWMRI_b-value": "800",
        "DWMRI_gradient_0000": "0 0 0", "DWMRI_NEX_0000": "2", "DWMRI_gradient_0002": "1 0 0",
        "DWMRI_gradient_0003": "0 1 0"})
    np.testing.assert_allclose(read_volume(tmp_path / "n.nrrd").gradients.bvals, [0, 0, 800, 800])


def test_fsl_default_names_and_explicit_files_win(tmp_path):
    p = dwi_arrays()
    write_volume(p, tmp_path / "dwi.nii.gz")
    (tmp_path / "dwi.nii.gz").rename(tmp_path / "data.nii.gz")
    (tmp_path / "dwi.bval").rename(tmp_path / "bvals")
    (tmp_path / "dwi.bvec").rename(tmp_path / "bvecs")
    found = read_volume(tmp_path / "data.nii.gz")
    np.testing.assert_allclose(found.gradients.bvals, p.gradients.bvals)
    np.savetxt(tmp_path / "other.bval", np.full((1, 7), 500.0))
    np.savetxt(tmp_path / "other.bvec", np.tile([[1.0], [0], [0]], 7))
    explicit = read_volume(tmp_path / "data.nii.gz", tmp_path / "other.bval", tmp_path / "other.bvec")
    assert (explicit.gradients.bvals == 500).all()


def test_the_folders_bvals_belong_to_data_only(tmp_path):
    """FSL's folder-level bvals/bvecs go with data.nii.gz; another image beside them is not given them (a
    warning names them instead), so a BOLD run next to a DWI keeps its own meaning."""
    p = dwi_arrays()
    write_volume(p, tmp_path / "data.nii.gz")
    (tmp_path / "data.bval").rename(tmp_path / "bvals")
    (tmp_path / "data.bvec").rename(tmp_path / "bvecs")
    nib.Nifti1Image(np.ones((3, 3, 2, 4), dtype=np.int16), np.eye(4)).to_filename(str(tmp_path / "bold.nii.gz"))
    assert read_volume(tmp_path / "bold.nii.gz").gradients is None
    assert "bvals" in diffusion_hint(tmp_path / "bold.nii.gz")
    sequence_nrrd(tmp_path / "seq.nrrd", [0, 1])
    assert diffusion_hint(tmp_path / "seq.nrrd") is None  # an NRRD carries its own gradients


def test_single_volume_bvec_in_one_column(tmp_path):
    nib.Nifti1Image(np.ones((3, 3, 2, 1), dtype=np.int16), np.eye(4)).to_filename(str(tmp_path / "one.nii"))
    (tmp_path / "one.bval").write_text("1000\n")
    (tmp_path / "one.bvec").write_text("0.6\n0.8\n0\n")
    g = read_volume(tmp_path / "one.nii").gradients
    np.testing.assert_allclose(g.bvecs, [[0.6, 0.8, 0]])
    (tmp_path / "one.bvec").write_text("0.6 0.8 0\n")  # the same volume as one row
    np.testing.assert_allclose(read_volume(tmp_path / "one.nii").gradients.bvecs, [[0.6, 0.8, 0]])


def test_mrtrix_gradient_table(tmp_path):
    p = dwi_arrays()
    write_volume(p, tmp_path / "dwi.nii.gz")
    world = p.gradients.directions_ras(p.ijk_to_ras)
    np.savetxt(tmp_path / "dwi.b", np.column_stack([world, p.gradients.bvals]))
    (tmp_path / "dwi.bval").unlink()
    (tmp_path / "dwi.bvec").unlink()
    g = read_volume(tmp_path / "dwi.nii.gz").gradients
    np.testing.assert_allclose(g.directions_ras(p.ijk_to_ras), world, atol=1e-9)
    np.testing.assert_allclose(g.bvals, p.gradients.bvals)


def test_a_dwi_without_found_gradients_is_not_sent_to_the_fmri_codec(tmp_path):
    data = np.random.default_rng(3).integers(100, 200, (6, 5, 2, 60), dtype=np.int16)
    nib.Nifti1Image(data, np.eye(4)).to_filename(str(tmp_path / "sub-01_dwi.nii.gz"))
    (tmp_path / "sub-01_dwi.bvals.txt").write_text(" ".join(["1000"] * 60))
    assert "sub-01_dwi.bvals.txt" in diffusion_hint(tmp_path / "sub-01_dwi.nii.gz")
    run = run_cli("compress", tmp_path / "sub-01_dwi.nii.gz", "-o", tmp_path / "a.sirz", "--progress", "none")
    assert run.returncode == 0, run.stderr
    assert "may be diffusion data" in run.stderr and "--bval" in run.stderr
    assert read_archive(tmp_path / "a.sirz").manifest["codec"]["name"] == "transform"  # the diffusion codec


def test_bids_sidecar_travels_with_the_image(tmp_path):
    bold_nifti(tmp_path / "sub-01_bold.nii.gz")
    sidecar = {"RepetitionTime": 2.5, "SliceTiming": [0, 0.6, 1.2, 1.8], "PhaseEncodingDirection": "j-",
               "TaskName": "rest ünïcode"}
    (tmp_path / "sub-01_bold.json").write_text(json.dumps(sidecar))
    volume = decompress(compress(read_volume(tmp_path / "sub-01_bold.nii.gz"), "lossless"))
    out = tmp_path / "out"
    out.mkdir()
    paths = write_volume(volume, out / "back.nii.gz")
    assert json.loads((out / "back.json").read_text(encoding="utf-8")) == sidecar
    assert [p.name for p in paths] == ["back.nii.gz", "back.json"] and not leftovers(out)
    (tmp_path / "sub-01_bold.json").write_text("{not json")
    with pytest.raises(Exception, match="sidecar"):
        read_volume(tmp_path / "sub-01_bold.nii.gz")


def test_a_changed_geometry_is_not_overruled_by_a_kept_header(tmp_path):
    bold_nifti(tmp_path / "bold.nii")
    volume = read_volume(tmp_path / "bold.nii")
    volume.ijk_to_ras = np.diag([1.0, 1.0, 1.0, 1.0])
    write_volume(volume, tmp_path / "moved.nii")
    np.testing.assert_allclose(nib.load(str(tmp_path / "moved.nii")).affine, np.eye(4))
