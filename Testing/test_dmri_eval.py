"""dMRI fidelity (`evaluate --dmri`): DTI and RISH maps on a phantom with known tensors, errors, report files."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from conftest import FAST_ARGS, REPO, run_cli
from SirenCompressLib import Volume4D, write_volume
from SirenCompressLib.errors import InputError
from SirenCompressLib.evaluate.dmri import LABELS, METRICS, TISSUES, dmri_fidelity, physical, smoothed
from SirenCompressLib.phantom import CSF_DIFFUSIVITY, GM_DIFFUSIVITY, WM_EIGENVALUES, dwi_phantom, tissue_tensors

pytest.importorskip("dipy", reason="needs dipy (the dmri and test extras)")

SHAPE = (16, 16, 3)
# Noise-free float phantom: a tensor fit must give back the tensors it was made from.
FA_TOLERANCE = 1e-4  # absolute
MD_TOLERANCE = 1e-4  # relative


def clean_phantom(**kwargs) -> Volume4D:
    options = dict(shape=SHAPE, directions=16, bvalues=(1000.0, 2000.0), b0s=2, noise=0.0, dtype="float32")
    return dwi_phantom(**{**options, **kwargs})


def truth() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ground-truth FA, MD, principal direction and brain mask of the phantom."""
    eigenvalues, eigenvectors = np.linalg.eigh(tissue_tensors(SHAPE))
    md = eigenvalues.mean(-1)
    spread = np.sqrt(((eigenvalues - md[..., None]) ** 2).sum(-1))
    norm = np.sqrt((eigenvalues ** 2).sum(-1))
    fa = np.sqrt(1.5) * np.divide(spread, norm, out=np.zeros_like(norm), where=norm > 0)
    return fa, md, eigenvectors[..., -1], md > 0


def test_fa_md_and_directions_match_the_phantom_tensors():
    fa, md, direction, brain = truth()
    result = dmri_fidelity(clean_phantom(), clean_phantom(), mask=brain, references=False)
    fitted = result.original.values
    np.testing.assert_allclose(fitted["FA"][brain], fa[brain], atol=FA_TOLERANCE)
    np.testing.assert_allclose(fitted["MD"][brain], md[brain], rtol=MD_TOLERANCE)
    wm = np.isclose(md, np.mean(WM_EIGENVALUES)) & (fa > 0.5)
    cosine = np.abs(np.sum(result.original.direction[wm] * direction[wm], axis=-1))
    assert cosine.min() > np.cos(np.radians(0.5))  # the gradient frame is right: fibres run around the ring
    expected = np.select([np.isclose(md, CSF_DIFFUSIVITY), np.isclose(md, GM_DIFFUSIVITY), wm],
                         [LABELS["CSF"], LABELS["GM"], LABELS["WM"]], 0)
    np.testing.assert_array_equal(result.tissues, expected)  # the FA/MD thresholds find the phantom's tissues


def test_gradient_directions_in_voxel_axes_do_not_depend_on_the_convention():
    volume = clean_phantom()
    angle = np.radians(30)
    volume.ijk_to_ras[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                                          [0, 0, 1]]) @ np.diag([2.0, -2.0, 2.0])
    g = volume.gradients
    for convention in ("fsl", "nrrd"):
        other = g.in_convention(convention, volume.ijk_to_ras)
        np.testing.assert_allclose(other.directions_voxel(volume.ijk_to_ras), g.directions_voxel(volume.ijk_to_ras),
                                   atol=1e-12)
    np.testing.assert_allclose(g.directions_voxel(volume.ijk_to_ras)[:, 1:], g.bvecs[:, 1:], atol=1e-12)


def test_a_volume_against_itself_has_no_error():
    volume = dwi_phantom(shape=SHAPE, directions=16, bvalues=(1000.0, 2000.0), noise=0.02)
    result = dmri_fidelity(volume, volume, references=False)
    (row,) = result.rows
    for metric in METRICS:
        for tissue in TISSUES:
            assert row.errors[metric][tissue].voxels > 0
            assert row.errors[metric][tissue].mean_abs == 0
    assert row.angle.voxels > 0 and row.angle.mean < 1e-3
    assert all(not m.any() for name, m in row.maps.items() if name != "angle")


def test_a_smoothed_volume_shows_the_smoothing_errors():
    original = clean_phantom()
    blurred = Volume4D(smoothed(physical(original)), original.ijk_to_ras)
    result = dmri_fidelity(original, blurred)
    decoded, mppca, smoothing = result.rows
    assert [r.name for r in result.rows] == ["decoded", "MP-PCA", "Gaussian smoothing FWHM 1.5"]
    for name, error_map in decoded.maps.items():  # the same operation as the smoothing reference
        np.testing.assert_array_equal(error_map, smoothing.maps[name])
    wm = decoded.errors
    assert wm["FA"]["WM"].mean < -10  # smoothing across the ring's edges and its curve lowers FA
    assert wm["RISH2"]["WM"].mean < -10
    assert wm["MD"]["CSF"].mean < -10  # CSF mixed with grey matter diffuses less
    assert decoded.angle.mean > 0.1
    assert mppca.errors["FA"]["WM"].mean_abs < 1  # MP-PCA leaves a noise-free image (almost) alone
    assert "JPEG 2000" in result.settings["notes"][0]  # no archive size: no JPEG 2000 row, and it says so


@pytest.mark.parametrize("volume, message", [
    (Volume4D(clean_phantom().data), "no diffusion gradients"),
    (clean_phantom(bvalues=(2000.0, 3000.0)), "no b ≈ 1000 shell"),
    (clean_phantom(b0s=0), "no b=0 volume"),
    (clean_phantom(directions=12), "need at least 15"),
])
def test_bad_input_is_refused(volume, message):
    with pytest.raises(InputError, match=message):
        dmri_fidelity(volume, volume, references=False)


def test_shape_mismatch_is_refused():
    with pytest.raises(InputError, match="shapes differ"):
        dmri_fidelity(clean_phantom(), clean_phantom(shape=(16, 16, 2)), references=False)


def test_cli_report_from_an_archive(tmp_path):
    original = tmp_path / "dwi.nii.gz"
    write_volume(dwi_phantom(shape=SHAPE, directions=16, bvalues=(1000.0, 2000.0), noise=0.02), original)
    archive = tmp_path / "dwi.sirz"
    assert run_cli("compress", original, "-o", archive, *FAST_ARGS).returncode == 0
    report = tmp_path / "report"
    r = run_cli("evaluate", original, archive, "--dmri", "--report", report)
    assert r.returncode == 0, r.stderr
    assert "| FA | compression | siren |" in r.stdout and "JPEG 2000 same size" in r.stdout
    document = json.loads((report / "fidelity.json").read_text())
    assert [row["name"] for row in document["rows"]] == ["siren", "MP-PCA", "Gaussian smoothing FWHM 1.5",
                                                         "JPEG 2000 same size"]
    assert document["settings"]["archive_bytes"] == archive.stat().st_size
    assert document["rows"][0]["relative_error_percent"]["FA"]["WM"]["voxels"] > 0
    affine = nib.load(original).affine
    for name in [f for row in document["files"]["maps"].values() for f in row.values()] + ["tissues.nii.gz"]:
        image = nib.load(report / name)
        assert image.shape == SHAPE and np.allclose(image.affine, affine)
    for name in ("report.md", "error_maps.png", "histograms.png"):
        assert (report / name).stat().st_size > 0
    again = run_cli("evaluate", original, archive, "--dmri", "--no-references", "--report", report)
    assert again.returncode == 2 and "exists already" in again.stderr


def test_cli_bad_input_gives_one_line(tmp_path):
    volume = clean_phantom()
    with_gradients, without = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    write_volume(volume, with_gradients)
    write_volume(Volume4D(volume.data, volume.ijk_to_ras), without)
    smaller = tmp_path / "c.nii.gz"
    write_volume(clean_phantom(shape=(16, 16, 2)), smaller)
    for args, message in [((without, without, "--dmri"), "no diffusion gradients"),
                          ((with_gradients, smaller, "--dmri"), "shapes differ"),
                          ((with_gradients, with_gradients, "--dmri", "--shell", "3000"), "no b ≈ 3000 shell"),
                          ((with_gradients, with_gradients, "--report", tmp_path / "r"), "only with --dmri")]:
        r = run_cli("evaluate", *args)
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_cli_without_dipy_says_what_to_install(tmp_path):
    path = tmp_path / "a.nii.gz"
    write_volume(clean_phantom(), path)
    code = "import sys\nsys.modules['dipy'] = None\nfrom SirenCompressLib.cli import main\nsys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, "evaluate", str(path), str(path), "--dmri"], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2 and "needs dipy and threadpoolctl: pip install 'sirencompress[dmri]'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_given_mask_and_labels(tmp_path):
    fa, md, _, brain = truth()
    labels = np.select([np.isclose(md, CSF_DIFFUSIVITY), fa > 0.5, brain], [1, 3, 2], 0).astype(np.uint8)
    labels[:, :8] = np.where(labels[:, :8] == 3, 2, labels[:, :8])  # differs from the FA/MD thresholds
    original, mask_path, labels_path = tmp_path / "a.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "labels.nii"
    write_volume(clean_phantom(), original)
    affine = nib.load(original).affine
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), mask_path)
    nib.save(nib.Nifti1Image(labels, affine), labels_path)
    r = run_cli("evaluate", original, original, "--dmri", "--no-references", "--json", "--mask", mask_path,
                "--labels", labels_path)
    assert r.returncode == 0, r.stderr
    document = json.loads(r.stdout)
    assert document["settings"]["mask"] == "given"
    assert document["tissue_voxels"] == {t: int((labels == LABELS[t]).sum()) for t in TISSUES}
    r = run_cli("evaluate", original, original, "--dmri", "--mask", labels_path.with_name("none.nii.gz"))
    assert r.returncode == 2 and "no such file" in r.stderr
