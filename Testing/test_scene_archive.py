"""Scene archives: a whole Slicer scene saved as one .sirz and opened again, against the real MRML scene of
slicer-core (headless)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from contextlib import contextmanager

import nibabel as nib
import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs the slicer-core package (installed by `make test`)")
if not hasattr(slicer, "vtkMRMLScene"):  # PyPI's unrelated "slicer" package
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

import vtk  # noqa: E402

from conftest import REPO, FakeParent, phantom  # noqa: E402
from SirenCompressLib import (  # noqa: E402
    ArchiveError,
    SirenCompressError,
    decompress,
    load_scene,
    read_archive,
    read_scene_archive,
    read_volume,
    save_scene,
    slicer_files,  # noqa: E402
    write_archive,
)
from SirenCompressLib import slicer_nodes as sn  # noqa: E402
from SirenCompressLib.archive import SCENE_KIND, manifest_kind  # noqa: E402
from SirenCompressLib.codecs import exact_codec, suggest  # noqa: E402
from SirenCompressLib.scene_archive import SceneArchive, build_scene_archive, write_scene_archive  # noqa: E402

SHAPE = (12, 10, 2)  # small: the exact codec decodes slices in Python
LAYOUT = 6  # vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView: not the default


@pytest.fixture
def full_scene(app_logic):
    """Slicer's application logic with the Markups logic too (markups need it to be stored)."""
    scene = app_logic.GetMRMLScene()
    markups = slicer.vtkSlicerMarkupsLogic()
    markups.SetMRMLScene(scene)
    app_logic.SetModuleLogic("Markups", markups)
    yield scene
    del markups


def build(scene, float_t1: bool = False) -> dict:
    """A DWI with an oblique measurement frame, a T1-like volume under a linear transform with its own window/level,
    a label map with its own colour table, a segmentation made from it, a table, a fiducial list and a layout."""
    rng = np.random.default_rng(3)
    volume = phantom(shape=SHAPE)
    c, s = np.cos(0.3), np.sin(0.3)
    volume.gradients = volume.gradients.in_convention("nrrd", volume.ijk_to_ras)
    volume.gradients.measurement_frame = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    dwi = sn.nodes_from_volume(volume, "dwi", scene)[0]
    t1 = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1")
    voxels = rng.normal(400, 80, (*SHAPE, 1))
    t1_grid = np.diag([0.9, 0.9, 1.5, 1.0])  # right-handed: Slicer's own writer (the float case) keeps the voxel order
    t1_grid[:3, 3] = [-7, 8, -2]
    sn.fill_volume(t1, type(volume)(voxels.astype(np.float32 if float_t1 else np.int16), t1_grid))
    t1.CreateDefaultDisplayNodes()
    t1.GetDisplayNode().SetAutoWindowLevel(0)
    t1.GetDisplayNode().SetWindowLevel(321, 123)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 5.0)
    matrix.SetElement(1, 0, 0.1)
    transform.SetMatrixTransformToParent(matrix)
    t1.SetAndObserveTransformNodeID(transform.GetID())
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "tissues")
    sn.fill_volume(labels, type(volume)((np.arange(np.prod(SHAPE)).reshape(*SHAPE, 1) % 3).astype(np.uint8),
                                        volume.ijk_to_ras))
    labels.CreateDefaultDisplayNodes()
    colors = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "tissue colours")
    colors.SetTypeToUser()
    colors.SetNumberOfColors(3)
    for i, (name, rgb) in enumerate([("background", (0, 0, 0)), ("grey", (0.5, 0.5, 0.5)), ("white", (1, 1, 1))]):
        colors.SetColor(i, name, *rgb, 1.0)
    labels.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segments")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labels, segmentation)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "measurements")
    slicer.util.updateTableFromArray(table, [np.array([1.5, 2.5]), np.array([3, 4], dtype=np.int32)], ["x", "n"])
    seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
    seeds.AddControlPoint(vtk.vtkVector3d(1, 2, 3), "tract seed")
    seeds.AddControlPoint(vtk.vtkVector3d(-4, 5.5, 6), "other")
    layout = slicer.vtkMRMLLayoutNode()
    layout.SetSingletonTag("vtkMRMLLayoutNode")  # as Slicer's layout manager adds it
    scene.AddNode(layout).SetViewArrangement(LAYOUT)  # headless, no layout descriptions: a warning
    return {"dwi": dwi, "T1": t1, "tissues": labels, "volume": volume,
            "arrays": {n.GetName(): slicer.util.arrayFromVolume(n).copy() for n in (dwi, t1, labels)}}


def by_name(scene, name: str):
    node = scene.GetFirstNodeByName(name)
    assert node is not None, name
    return node


def user_nodes(scene) -> list[str]:
    collection = scene.GetNodes()
    return sorted(collection.GetItemAsObject(i).GetID() for i in range(collection.GetNumberOfItems()))


def test_scene_round_trip(full_scene, tmp_path):
    """Saved with the suggested codec, cleared, opened: names, references, display, colours, layout, markups, table,
    segmentation and transform as they were; 3D members bit-exact; the DWI as its archive decodes, with a report."""
    scene = full_scene
    built = build(scene)
    path = tmp_path / "scene.sirz"
    saved = save_scene(path, scene)
    kinds = {e["name"]: (e["kind"], e["codec"]) for e in saved.manifest["nodes"]}
    assert kinds == {"dwi": ("dwi", suggest(True, 15)), "T1": ("volume", exact_codec()),
                     "tissues": ("labelmap", exact_codec())}
    assert manifest_kind(path) == SCENE_KIND
    scene.Clear(0)
    added = load_scene(path, scene)
    assert {n.GetName() for n in added} >= {"dwi", "T1", "tissues", "shift", "tissue colours", "segments",
                                            "measurements", "seeds", "dwi report"}
    t1, labels, dwi = by_name(scene, "T1"), by_name(scene, "tissues"), by_name(scene, "dwi")
    for node in (t1, labels):
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), built["arrays"][node.GetName()])
        assert slicer.util.arrayFromVolume(node).dtype == built["arrays"][node.GetName()].dtype
    np.testing.assert_allclose(sn._ijk_to_ras(labels), built["volume"].ijk_to_ras)  # left-handed, as it was
    decoded = decompress(read_scene_archive(path).node_archive("dwi"))
    np.testing.assert_array_equal(sn.volume_from_node(dwi).data, decoded.data)
    error = np.abs(decoded.data.astype(float) - built["volume"].data).max()
    assert 0 < error < 0.2 * np.ptp(built["volume"].data)
    back = sn.volume_from_node(dwi)
    np.testing.assert_allclose(back.gradients.directions_ras(back.ijk_to_ras),
                               built["volume"].gradients.directions_ras(built["volume"].ijk_to_ras), atol=1e-6)
    np.testing.assert_allclose(back.gradients.bvals, built["volume"].gradients.bvals)
    assert t1.GetTransformNodeID() == by_name(scene, "shift").GetID()
    matrix = vtk.vtkMatrix4x4()
    by_name(scene, "shift").GetMatrixTransformToParent(matrix)
    assert (matrix.GetElement(0, 3), matrix.GetElement(1, 0)) == (5.0, 0.1)
    assert (t1.GetDisplayNode().GetWindow(), t1.GetDisplayNode().GetLevel()) == (321, 123)
    assert not t1.GetDisplayNode().GetAutoWindowLevel()
    colors = labels.GetDisplayNode().GetColorNode()
    assert colors.GetName() == "tissue colours" and colors.GetColorName(2) == "white"
    assert by_name(scene, "segments").GetSegmentation().GetNumberOfSegments() == 2
    seeds = by_name(scene, "seeds")
    assert seeds.GetNumberOfControlPoints() == 2 and seeds.GetNthControlPointLabel(0) == "tract seed"
    assert seeds.GetNthControlPointPosition(1) == (-4, 5.5, 6)
    table = by_name(scene, "measurements")
    np.testing.assert_array_equal(slicer.util.arrayFromTableColumn(table, "x"), [1.5, 2.5])
    assert scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode").GetViewArrangement() == LAYOUT
    assert by_name(scene, "dwi report").GetNumberOfRows() == SHAPE[2]


def test_sequence_scene_lossless_and_float_volume(full_scene, tmp_path):
    """A sequence with its browser and a float 3D volume (kept by Slicer's own writer), all coded exactly; opened
    twice into one scene, the second copy gets new ids and its own voxels."""
    scene = full_scene
    built = build(scene, float_t1=True)
    data = np.random.default_rng(1).integers(0, 500, (10, 9, 2, 6)).astype(np.int16)
    volume = type(built["volume"])(data, np.diag([1.5, 1.5, 3.0, 1.0]))
    frames = sn.volume_from_node(sn.nodes_from_volume(volume, "bold", scene)[0]).frames
    path = tmp_path / "scene.sirz"
    saved = save_scene(path, scene, codec=exact_codec())
    assert {e["name"]: e["kind"] for e in saved.manifest["nodes"]} == {"dwi": "dwi", "tissues": "labelmap",
                                                                       "bold": "sequence"}
    assert any(name.endswith(".nrrd") and "T1" in name for name in saved.scene_files())  # the float volume
    scene.Clear(0)
    load_scene(path, scene)
    second = load_scene(path, scene)
    for nodes in ([n for n in scene_nodes(scene) if n not in second], second):
        named = {n.GetName(): n for n in nodes if n.IsA("vtkMRMLVolumeNode")}
        decoded = sn.volume_from_node(next(n for n in nodes if n.IsA("vtkMRMLSequenceNode")))
        np.testing.assert_array_equal(decoded.data, data)
        assert decoded.frames == frames
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(named["dwi"]), built["arrays"]["dwi"])
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(named["T1"]), built["arrays"]["T1"])
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(named["bold"]), data[..., 0].T)  # the proxy
    browsers = [n for n in second if n.IsA("vtkMRMLSequenceBrowserNode")]
    assert len(browsers) == 1 and browsers[0].GetProxyNode(browsers[0].GetMasterSequenceNode()) is not None
    from SirenCompressLib.cli import main

    assert main(["decompress", str(path), "-o", str(tmp_path / "out")]) == 0  # the sequence as Slicer reads it
    scene.Clear(0)
    scene.SetURL(str(tmp_path / "out" / "scene.mrml"))
    assert scene.Connect()
    decoded = sn.volume_from_node(next(n for n in scene_nodes(scene) if n.IsA("vtkMRMLSequenceNode")))
    np.testing.assert_array_equal(decoded.data, data)
    assert decoded.frames == frames


def scene_nodes(scene) -> list:
    collection = scene.GetNodes()
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def test_damaged_scene_archive_is_refused_and_nothing_is_added(full_scene, tmp_path):
    scene = full_scene
    build(scene)
    path = tmp_path / "scene.sirz"
    saved = save_scene(path, scene)
    before = user_nodes(scene)
    # A byte of a node member flipped: the digest says so.
    data = bytearray(path.read_bytes())
    offset = data.index(b"nodes/0001.sirz") + 200
    data[offset] ^= 0xFF
    (tmp_path / "flipped.sirz").write_bytes(bytes(data))
    # A label map member whose coded voxels are damaged but whose digests were made to match: it fails to decode,
    # after the DWI and the T1 decoded well.
    label = saved.archives[next(e["id"] for e in saved.manifest["nodes"] if e["kind"] == "labelmap")]
    member = next(iter(label.members))
    good = label.members[member]
    label.members[member] = good[:-8] + bytes(8)
    nodes = [(e["id"], e["name"], e["kind"], saved.archives[e["id"]]) for e in saved.manifest["nodes"]]
    files = saved.scene_files()
    write_scene_archive(build_scene_archive(nodes, files, saved.mrml), tmp_path / "undecodable.sirz")
    label.members[member] = good
    # A node the MRML scene does not hold.
    renamed = [(node_id + "9", name, kind, archive) for node_id, name, kind, archive in nodes]
    write_scene_archive(build_scene_archive(renamed, files, saved.mrml), tmp_path / "mismatch.sirz")
    for name, message in [("flipped", "digest|not a valid"), ("undecodable", "tissues"), ("mismatch", "not a")]:
        with pytest.raises(ArchiveError, match=message):
            load_scene(tmp_path / f"{name}.sirz", scene)
        assert user_nodes(scene) == before, name


def test_kinds_of_archive_are_told_apart(full_scene, tmp_path):
    """A single-volume archive opens as before; read_archive refuses a scene archive with a pointer to the reader;
    a member that is neither a node nor a scene file is refused."""
    scene = full_scene
    build(scene)
    path = tmp_path / "scene.sirz"
    saved = save_scene(path, scene)
    with pytest.raises(ArchiveError, match="scene archive"):
        read_archive(path)
    write_archive(saved.node_archive("T1"), tmp_path / "t1.sirz")
    assert manifest_kind(tmp_path / "t1.sirz") == "volume"
    np.testing.assert_array_equal(decompress(read_archive(tmp_path / "t1.sirz")).data[..., 0],
                                  np.transpose(slicer.util.arrayFromVolume(by_name(scene, "T1")), (2, 1, 0)))
    with pytest.raises(ArchiveError, match="not a scene archive"):
        read_scene_archive(tmp_path / "t1.sirz")
    extra = SceneArchive(saved.manifest, {**saved.members, "nodes/0009.sirz": b"x"})
    write_scene_archive(extra, tmp_path / "extra.sirz")
    with pytest.raises(ArchiveError, match="unexpected member"):
        read_scene_archive(tmp_path / "extra.sirz")
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo(saved.manifest["scene"]).compress_type == zipfile.ZIP_DEFLATED
        assert zf.getinfo("nodes/0000.sirz").compress_type == zipfile.ZIP_STORED


def test_cli_info_and_decompress(full_scene, tmp_path, capsys):
    from SirenCompressLib.cli import main

    build(full_scene)
    path = tmp_path / "scene.sirz"
    save_scene(path, full_scene)
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [(n["name"], n["kind"]) for n in info["nodes"]] == [("dwi", "dwi"), ("T1", "volume"),
                                                               ("tissues", "labelmap")]
    assert all(n["ratio_raw16"] > 0 for n in info["nodes"]) and info["archive_bytes"] == path.stat().st_size
    assert main(["info", str(path)]) == 0 and "tissues  labelmap" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["decompress", str(path), "-o", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"dwi.nrrd", "T1.nii.gz", "tissues.nii.gz", "scene.mrml", "Data"}
    np.testing.assert_array_equal(np.asarray(nib.load(out / "T1.nii.gz").dataobj).reshape(SHAPE),
                                  np.transpose(slicer.util.arrayFromVolume(by_name(full_scene, "T1")), (2, 1, 0)))
    saved = {name: (slicer.util.arrayFromVolume(by_name(full_scene, name)).copy(),
                    sn._ijk_to_ras(by_name(full_scene, name))) for name in ("T1", "tissues")}
    full_scene.Clear(0)  # the folder's scene, opened by Slicer's own storage nodes
    full_scene.SetURL(str(out / "scene.mrml"))
    assert full_scene.Connect()
    dwi = sn.volume_from_node(by_name(full_scene, "dwi"))
    decoded = decompress(read_scene_archive(path).node_archive("dwi"))
    np.testing.assert_array_equal(dwi.data, decoded.data)
    np.testing.assert_allclose(dwi.gradients.directions_ras(dwi.ijk_to_ras),
                               decoded.gradients.directions_ras(decoded.ijk_to_ras), atol=1e-6)
    for name, (voxels, ijk_to_ras) in saved.items():
        assert_same_in_world(by_name(full_scene, name), voxels, ijk_to_ras)
    capsys.readouterr()
    assert main(["decompress", str(path), "-o", str(out)]) == 2  # exists: --force
    assert "exists already" in capsys.readouterr().err
    assert main(["decompress", str(path), "--node", "dwi", "-o", str(tmp_path / "dwi.nrrd")]) == 0
    assert "dwi.nrrd" in capsys.readouterr().out
    np.testing.assert_array_equal(read_volume(tmp_path / "dwi.nrrd").data,
                                  decompress(read_scene_archive(path).node_archive("dwi")).data)
    assert main(["info", str(path), "--node", "T1", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["codec"]["name"] == exact_codec()
    assert info["sizes"]["archive_bytes"] == read_scene_archive(path).node_entry("T1")["bytes"]
    assert main(["decompress", str(path), "--node", "nothing", "-o", str(tmp_path / "x.nii.gz")]) == 2
    assert "no node 'nothing' (its compressed nodes: 'dwi', 'T1', 'tissues')" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()


def assert_same_in_world(node, voxels: np.ndarray, ijk_to_ras: np.ndarray) -> None:
    """A scalar volume node holds `voxels` (k, j, i) at the RAS positions `ijk_to_ras` gives them (the voxel order
    may differ: ITK reads a left-handed NIfTI grid as a right-handed one)."""
    a, b = slicer.util.arrayFromVolume(node), voxels
    to_node = np.linalg.inv(sn._ijk_to_ras(node)) @ ijk_to_ras
    k, j, i = np.indices(b.shape)
    ijk = np.rint(to_node @ np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])).astype(int)
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a[ijk[2], ijk[1], ijk[0]], b.ravel())


def test_file_writer_and_reader_take_scenes(full_scene, tmp_path):
    """The module's .sirz writer saves the scene (no node id: Slicer saving the scene); the reader opens it."""
    build(full_scene)
    writer = slicer_files.SirenCompressFileWriter(FakeParent())
    assert writer.canWriteObject(full_scene) and not writer.canWriteObject(by_name(full_scene, "seeds"))
    path = tmp_path / "scene.sirz"
    assert writer.write({"fileName": str(path)}) is True
    full_scene.Clear(0)
    parent = FakeParent()
    assert slicer_files.SirenCompressFileReader(parent).load({"fileName": str(path)}) is True
    names = {full_scene.GetNodeByID(i).GetName() for i in parent.loadedNodes}
    assert {"dwi", "T1", "tissues", "seeds", "segments"} <= names
    path.write_bytes(path.read_bytes()[:-100])
    assert slicer_files.SirenCompressFileReader(parent).load({"fileName": str(path)}) is False
    assert "Cannot open" in parent.messages.GetNthMessageText(parent.messages.GetNumberOfMessages() - 1)
    with pytest.raises(ArchiveError, match="not at the start"):  # not read as the node archive stored last
        read_archive(path)


def test_saving_reports_progress_and_can_be_cancelled(full_scene, tmp_path):
    """Node events, then each node's codec events, rise to the last node; a receiver that raises stops the save
    with nothing written, and the file writer reports the cancel as a message."""
    build(full_scene)
    path = tmp_path / "scene.sirz"
    events, tracker, seen = [], sn.SceneProgress(), []

    def follow(event: dict) -> None:
        events.append(event)
        tracker.update(event)
        seen.append((tracker.percent, tracker.status))

    save_scene(path, full_scene, progress=follow)
    nodes = [(e["name"], e["index"], e["nodes"]) for e in events if e["event"] == "node"]
    assert nodes == [("dwi", 0, 3), ("T1", 1, 3), ("tissues", 2, 3)]
    assert sum(e["event"] == "slice" for e in events) == 3 * SHAPE[2]
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and percents[-1] == 100
    assert seen[-1][1] == f"tissues (3/3): slice {SHAPE[2]}/{SHAPE[2]}"
    before = path.read_bytes()

    def cancel(event: dict) -> None:
        if event["event"] == "node" and event["index"] == 1:
            raise SirenCompressError("cancelled")

    with pytest.raises(SirenCompressError, match="cancelled"):
        save_scene(tmp_path / "other.sirz", full_scene, progress=cancel)
    with pytest.raises(SirenCompressError, match="cancelled"):
        save_scene(path, full_scene, force=True, progress=cancel)
    assert not (tmp_path / "other.sirz").exists() and path.read_bytes() == before

    class CancellingWriter(slicer_files.SirenCompressFileWriter):
        @contextmanager
        def scene_progress(self):
            yield cancel

    parent = FakeParent()
    assert CancellingWriter(parent).write({"fileName": str(tmp_path / "other.sirz")}) is False
    assert "cancelled" in parent.messages.GetNthMessageText(0) and not (tmp_path / "other.sirz").exists()


def test_settings_need_a_codec(full_scene, tmp_path):
    build(full_scene)
    with pytest.raises(Exception, match="need the codec"):
        save_scene(tmp_path / "s.sirz", full_scene, epochs=3)
    assert not (tmp_path / "s.sirz").exists()


def test_library_does_not_import_slicer():
    code = "import sys, SirenCompressLib; assert 'slicer' not in sys.modules; SirenCompressLib.read_scene_archive"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
