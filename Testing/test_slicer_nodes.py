"""The Slicer side, headless against a real MRML scene from the PyPI package slicer-core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs the slicer-core package (installed by `make test`)")
if not hasattr(slicer, "vtkMRMLScene"):  # PyPI's unrelated "slicer" package
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

import vtk  # noqa: E402

from conftest import FAST, FakeParent, leftovers, phantom  # noqa: E402
from SirenCompressLib import (  # noqa: E402
    SIREN_PRESETS,
    FrameIndex,
    InputError,
    SirenConfig,
    Volume4D,
    compress,
    jobs,  # noqa: E402
    read_volume,
    slicer_files,  # noqa: E402
    write_archive,
    write_volume,
)
from SirenCompressLib import slicer_nodes as sn  # noqa: E402
from SirenCompressLib.codecs import fmri, lossless, siren3d  # noqa: E402


def dwi_node(scene, volume: Volume4D):
    return sn.nodes_from_volume(volume, "dwi", scene)[0]


def sequence_volume() -> Volume4D:
    data = np.random.default_rng(0).normal(100, 10, (10, 9, 3, 8)).astype(np.float32)
    ijk = np.diag([1.5, 1.5, 3.0, 1.0])
    ijk[:3, 3] = [5, -6, 7]
    return Volume4D(data, ijk, frames=FrameIndex("time", "s", [f"{2.5 * t:g}" for t in range(8)]))


def test_dwi_node_round_trip_keeps_gradients_and_measurement_frame(scene):
    volume = phantom()
    node = dwi_node(scene, volume)
    assert node.IsA("vtkMRMLDiffusionWeightedVolumeNode") and node.GetNumberOfGradients() == 15
    back = sn.volume_from_node(node)
    np.testing.assert_array_equal(back.data, volume.data)
    np.testing.assert_allclose(back.ijk_to_ras, volume.ijk_to_ras)
    np.testing.assert_allclose(back.gradients.bvals, volume.gradients.bvals)
    np.testing.assert_allclose(back.gradients.directions_ras(back.ijk_to_ras),
                               volume.gradients.directions_ras(volume.ijk_to_ras), atol=1e-9)


def test_dwi_with_oblique_measurement_frame_survives_slicer_nrrd_storage(scene, tmp_path):
    """Our NRRD file, read by Slicer's own NRRD storage node, gives the same world gradient directions."""
    volume = phantom()
    c, s = np.cos(0.4), np.sin(0.4)
    volume.gradients = volume.gradients.in_convention("nrrd", volume.ijk_to_ras)
    volume.gradients.measurement_frame = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    write_volume(volume, tmp_path / "dwi.nrrd")
    storage = scene.AddNewNodeByClass("vtkMRMLNRRDStorageNode")
    storage.SetFileName(str(tmp_path / "dwi.nrrd"))
    node = scene.AddNewNodeByClass("vtkMRMLDiffusionWeightedVolumeNode")
    assert storage.ReadData(node)
    back = sn.volume_from_node(node)
    np.testing.assert_array_equal(back.data, volume.data)
    np.testing.assert_allclose(back.gradients.directions_ras(back.ijk_to_ras),
                               volume.gradients.directions_ras(volume.ijk_to_ras), atol=1e-6)


def test_sequence_round_trip_keeps_index(scene):
    volume = sequence_volume()
    sequence, browser = sn.nodes_from_volume(volume, "fmri", scene)
    assert sequence.GetNumberOfDataNodes() == 8 and browser.GetProxyNode(sequence) is not None
    back = sn.volume_from_node(sequence)
    np.testing.assert_array_equal(back.data, volume.data)
    np.testing.assert_allclose(back.ijk_to_ras, volume.ijk_to_ras)
    assert back.frames == volume.frames


def test_multivolume_is_accepted(scene):
    volume = sequence_volume()
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "mv")  # slicer-core has no MultiVolume class
    sn._set_voxels(node, volume.data)
    node.SetAttribute(sn.MULTIVOLUME_LABELS, ",".join(volume.frames.values))
    assert sn.input_kind(node) == "multivolume"
    back = sn.volume_from_node(node)
    np.testing.assert_array_equal(back.data, volume.data)
    assert back.frames.values == volume.frames.values


def test_plain_3d_volume_is_refused_with_a_reason(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "t1")
    sn._set_voxels(node, np.zeros((4, 4, 4, 1), np.int16))
    with pytest.raises(InputError, match="single 3D volume"):
        sn.input_kind(node)
    with pytest.raises(InputError, match="select an input"):
        sn.input_kind(None)
    assert slicer_files.SirenCompressFileWriter(FakeParent()).canWriteObject(node) is False


@pytest.fixture
def archive_path(tmp_path):
    path = tmp_path / "p.sirz"
    write_archive(compress(phantom(), config=FAST), path)
    return path


def test_reader_loads_dwi_and_report(scene, archive_path):
    parent = FakeParent()
    reader = slicer_files.SirenCompressFileReader(parent)
    assert reader.canLoadFile(str(archive_path)) is True
    assert isinstance(reader.canLoadFileConfidence(str(archive_path)), float)
    assert reader.load({"fileName": str(archive_path)}) is True
    nodes = [scene.GetNodeByID(i) for i in parent.loadedNodes]
    classes = [n.GetClassName() for n in nodes]
    assert classes == ["vtkMRMLDiffusionWeightedVolumeNode", "vtkMRMLTableNode", "vtkMRMLPlotSeriesNode",
                       "vtkMRMLPlotChartNode"]
    table = nodes[1]
    assert [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())] == \
        ["slice", "MSE", "PSNR", "SSIM", "bytes", "D/σ²", "SNR loss"]
    manifest = json.loads(zipfile.ZipFile(archive_path).read("manifest.json"))
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table, "PSNR"),
                               [s["metrics"]["psnr"] for s in manifest["slices"]])
    assert nodes[3].GetNthPlotSeriesNode(0).GetYColumnName() == "PSNR"


def test_reader_loads_a_sequence_archive(scene, tmp_path):
    volume = sequence_volume()
    write_archive(compress(volume, config=SirenConfig(layers=1, units=8, epochs=3)), tmp_path / "s.sirz")
    parent = FakeParent()
    assert slicer_files.SirenCompressFileReader(parent).load({"fileName": str(tmp_path / "s.sirz"), "name": "fmri"})
    sequence = scene.GetNodeByID(parent.loadedNodes[0])
    assert sequence.IsA("vtkMRMLSequenceNode") and sequence.GetName() == "fmri"
    assert sequence.GetIndexName() == "time" and sequence.GetNthIndexValue(7) == "17.5"


def test_reader_refuses_a_corrupt_file_and_leaves_nothing(scene, tmp_path):
    (tmp_path / "bad.sirz").write_bytes(b"garbage" * 50)
    before = scene.GetNumberOfNodes()
    parent = FakeParent()
    assert slicer_files.SirenCompressFileReader(parent).load({"fileName": str(tmp_path / "bad.sirz")}) is False
    assert scene.GetNumberOfNodes() == before
    assert "not a valid .sirz archive" in parent.messages.GetNthMessageText(0)


def test_reader_needs_no_torch(tmp_path, archive_path):
    """Opening an archive in Slicer goes through numpy only."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import slicer; slicer.mrmlScene = slicer.vtkMRMLScene()\n"
            "from SirenCompressLib.slicer_nodes import load_archive\n"
            f"print(load_archive({str(archive_path)!r}).nodes[0].GetClassName())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "vtkMRMLDiffusionWeightedVolumeNode"


def test_compress_node_blocking(scene, tmp_path):
    node = dwi_node(scene, phantom())
    node.SetName("brain")
    events = []
    loaded = sn.compress_node(node, tmp_path / "brain.sirz", FAST, on_event=events.append)
    assert loaded.nodes[0].GetName() == "brain_siren"
    assert loaded.nodes[0].GetNumberOfGradients() == 15
    assert loaded.ratio == pytest.approx(16 * 14 * 3 * 15 * 2 / (tmp_path / "brain.sirz").stat().st_size)
    assert loaded.report.table.GetNumberOfRows() == 3
    assert {"start", "epoch", "slice", "done"} <= {e["event"] for e in events}
    decoded = sn.volume_from_node(loaded.nodes[0])
    np.testing.assert_allclose(decoded.ijk_to_ras, sn.volume_from_node(node).ijk_to_ras)


def test_lossless_compress_node_is_bit_exact(scene, tmp_path):
    node = dwi_node(scene, phantom())
    node.SetName("brain")
    loaded = sn.compress_node(node, tmp_path / "brain.sirz", sn.panel_config(codec="lossless"))
    assert loaded.archive.manifest["codec"]["name"] == "lossless"
    original, decoded = sn.volume_from_node(node), sn.volume_from_node(loaded.nodes[0])
    assert decoded.data.dtype == original.data.dtype
    np.testing.assert_array_equal(decoded.data, original.data)
    np.testing.assert_allclose(decoded.gradients.bvals, original.gradients.bvals)


def test_fmri_codec_for_a_long_sequence(scene, tmp_path):
    from SirenCompressLib.fmri_phantom import fmri_phantom

    run = fmri_phantom(shape=(16, 16, 2), frames=50).volume
    sequence, _ = sn.nodes_from_volume(run, "bold", scene)
    assert sn.suggested_codec(sequence) == "fmri"
    assert sn.suggested_codec(sn.nodes_from_volume(sequence_volume(), "short", scene)[0]) == "siren"
    assert sn.suggested_codec(dwi_node(scene, phantom())) == "transform"
    config = sn.panel_config(codec="fmri", layers=2, units=16, epochs=20, lr=1e-3, final_activation="relu",
                             device="cpu")
    assert config == fmri.Config(layers=2, units=16, epochs=20, lr=1e-3, device="cpu")
    loaded = sn.compress_node(sequence, tmp_path / "bold.sirz", fmri.Config(**{**config.to_json(), "qat_epochs": 5}))
    assert loaded.archive.manifest["codec"]["name"] == "fmri"
    assert loaded.nodes[0].IsA("vtkMRMLSequenceNode") and loaded.nodes[0].GetNumberOfDataNodes() == 50


def test_siren3d_from_the_panel_settings(scene, tmp_path):
    node = dwi_node(scene, phantom())
    config = sn.panel_config(codec="siren3d", layers=1, units=8, epochs=5, device="cpu")
    assert type(config) is siren3d.Config
    loaded = sn.compress_node(node, tmp_path / "brain.sirz", config)  # the codec from the settings' class
    assert loaded.archive.manifest["codec"] == {"name": "siren3d", "config": config.to_json()}
    with pytest.raises(InputError, match="not the settings of the siren3d codec"):
        sn.NodeCompression(node, tmp_path / "x.sirz", SirenConfig(), codec="siren3d")


def test_background_compress_can_be_cancelled(scene, tmp_path):
    node = dwi_node(scene, phantom())
    task = sn.NodeCompression(node, tmp_path / "c.sirz", SirenConfig(epochs=100000, device="cpu")).start()
    folder = task.folder
    seen = []
    while not any(e["event"] == "epoch" for e in seen):
        assert task.running, task.job.error
        seen += task.poll()
    task.cancel()
    assert not task.running and task.job.cancelled
    assert not (tmp_path / "c.sirz").exists() and leftovers(tmp_path) == []
    assert not os.path.exists(folder)
    with pytest.raises(sn.SirenCompressError, match="cancelled"):
        task.finish(scene)


def test_failed_compress_reports_the_cli_error(scene, tmp_path):
    node = dwi_node(scene, phantom())
    with pytest.raises(sn.SirenCompressError, match="no CUDA GPU|exists already"):
        sn.compress_node(node, tmp_path / "x.sirz", SirenConfig(epochs=1, device="cuda"))
    assert not (tmp_path / "x.sirz").exists()


def test_writer_uses_the_panel_settings(scene, tmp_path):
    node = dwi_node(scene, phantom())
    settings = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    settings.SetSingletonTag(sn.MODULE_NAME)
    for name, value in {"layers": "1", "units": "16", "epochs": "5", "learningRate": "0.001",
                        "finalActivation": "relu", "device": "cpu"}.items():
        settings.SetParameter(name, value)
    panel = dict(layers=1, units=16, epochs=5, lr=0.001, final_activation="relu", device="cpu")
    assert sn.settings_from_scene(scene) == ("siren", SirenConfig(**{**SIREN_PRESETS["compact"].to_json(), **panel}))
    settings.SetParameter("preset", "paper")
    assert sn.settings_from_scene(scene) == ("siren", SirenConfig(**panel))
    settings.SetParameter("codec", "siren3d")
    assert sn.settings_from_scene(scene) == ("siren3d", siren3d.Config(**panel))
    settings.SetParameter("codec", "lossless")
    settings.SetParameter("quantizeStep", "0.25")
    assert sn.settings_from_scene(scene) == ("lossless", lossless.Config(quantize=0.25))
    assert sn.rate_flags_from_scene(scene) == ()
    settings.SetParameter("rateTarget", "noise")
    settings.SetParameter("targetValue", "10")
    with pytest.raises(InputError, match="lossless codec cannot aim at an added noise"):
        sn.rate_flags_from_scene(scene)
    settings.SetParameter("codec", "siren")
    assert sn.rate_flags_from_scene(scene) == ("--target-noise", "0.1")
    settings.SetParameter("rateTarget", "none")
    parent = FakeParent()
    writer = slicer_files.SirenCompressFileWriter(parent)
    assert writer.canWriteObject(node) is True
    assert writer.write({"nodeID": node.GetID(), "fileName": str(tmp_path / "w.sirz")}) is True
    manifest = json.loads(zipfile.ZipFile(tmp_path / "w.sirz").read("manifest.json"))
    assert manifest["codec"]["config"]["units"] == 16 and manifest["codec"]["config"]["final_activation"] == "relu"
    assert parent.writtenNodes == [node.GetID()]


def test_a_scene_saved_after_the_writer_references_the_archive(scene, tmp_path):
    """Slicer writes a scene's nodes by their storage nodes' file names (qSlicerSaveDataDialog.cxx reads the
    storage node back after the writer ran), so the writer points the node's storage node at the archive."""
    node = dwi_node(scene, phantom())
    settings = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    settings.SetSingletonTag(sn.MODULE_NAME)
    settings.SetParameter("codec", "lossless")
    properties = {"nodeID": node.GetID(), "fileName": str(tmp_path / "a.sirz")}
    assert slicer_files.SirenCompressFileWriter(FakeParent()).write(properties)
    assert node.GetStorageNode().GetFileName() == str(tmp_path / "a.sirz")
    scene.SetURL(str(tmp_path / "scene.mrml"))
    scene.Commit()
    assert "a.sirz" in (tmp_path / "scene.mrml").read_text()


def test_writer_runs_its_hooks_and_reports_what_stops_it(scene, tmp_path):
    """The module's writer installs dependencies in `prepare` and shows progress in `wait`; a refusal in
    `prepare` is a message for Slicer's Save dialog, not a traceback, and writes nothing."""
    node = dwi_node(scene, phantom())
    seen = []

    class Writer(slicer_files.SirenCompressFileWriter):
        def prepare(self):
            raise sn.SirenCompressError("pynrrd is not installed")

        def wait(self, task):
            seen.append(task)

    parent = FakeParent()
    assert Writer(parent).write({"nodeID": node.GetID(), "fileName": str(tmp_path / "x.sirz")}) is False
    assert "pynrrd is not installed" in parent.messages.GetNthMessageText(0)
    assert seen == [] and not (tmp_path / "x.sirz").exists() and node.GetStorageNode() is None


def test_writer_cancelled_from_its_wait_writes_nothing(scene, tmp_path):
    node = dwi_node(scene, phantom())

    class Writer(slicer_files.SirenCompressFileWriter):
        def wait(self, task):  # as the progress dialog's Cancel does
            while not any(e["event"] == "start" for e in task.poll()):
                assert task.running
            task.cancel()

    settings = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    settings.SetSingletonTag(sn.MODULE_NAME)
    settings.SetParameter("epochs", "100000")
    settings.SetParameter("device", "cpu")
    parent = FakeParent()
    assert Writer(parent).write({"nodeID": node.GetID(), "fileName": str(tmp_path / "c.sirz")}) is False
    assert "cancelled" in parent.messages.GetNthMessageText(0)
    assert not (tmp_path / "c.sirz").exists() and leftovers(tmp_path) == []


def test_writer_and_reader_answer_about_every_mrml_object_without_raising(scene, tmp_path):
    """qSlicerSaveDataDialog.cxx asks every writer about the scene itself (`fileWriterExtensions(this->MRMLScene)`)
    and about each storable node; qSlicerScriptedFileWriter.cxx / qSlicerScriptedFileReader.cxx accept only a
    Python bool from canWriteObject / canLoadFile (PyBool_Check) and print any exception as a traceback."""
    writer = slicer_files.SirenCompressFileWriter(FakeParent())
    reader = slicer_files.SirenCompressFileReader(FakeParent())
    classes = [scene.GetNthRegisteredNodeClass(i).GetClassName()
               for i in range(scene.GetNumberOfRegisteredNodeClasses())]
    objects = [None, vtk.vtkImageData()] + [scene.CreateNodeByClass(name) for name in classes]
    objects += [scene.AddNewNodeByClass(name) for name in ("vtkMRMLScalarVolumeNode", "vtkMRMLSequenceNode",
                                                           "vtkMRMLVectorVolumeNode", "vtkMRMLTableNode")]
    assert len(classes) > 50
    for obj in objects:
        assert writer.canWriteObject(obj) is False, obj
        assert writer.extensions(obj) == [sn.NAME_FILTER]
    assert writer.canWriteObject(dwi_node(scene, phantom())) is True
    assert writer.canWriteObject(scene) is True  # the scene: as a scene archive
    (tmp_path / "folder.sirz").mkdir()
    for path in ("", str(tmp_path), str(tmp_path / "folder.sirz"), "scan.nrrd", "x.SIRZ", "ü ä.sirz", "/no/such.sirz"):
        assert type(reader.canLoadFile(path)) is bool and type(reader.canLoadFileConfidence(path)) is float


def test_choice_updates_follow_only_a_change(scene):
    """A preset brings its learning rate and a new input its suggested codec, but only when the user changed
    that choice: connecting the panel (before None) or an unrelated change leaves every value alone."""
    long_run = sn.nodes_from_volume(Volume4D(np.zeros((4, 4, 2, 50), np.int16), np.eye(4)), "bold", scene)[0]
    dwi = dwi_node(scene, phantom())
    now = {"preset": "paper", "inputNode": long_run, "codec": "siren", "rateTarget": "none"}
    assert sn.choice_updates(None, now) == {}
    assert sn.choice_updates(dict(now), now) == {}
    assert sn.choice_updates(now, {**now, "rateTarget": "noise"}) == {"targetValue": sn.TARGET_DEFAULTS["noise"]}
    assert sn.choice_updates({**now, "preset": "compact"}, now) == {"learningRate": SIREN_PRESETS["paper"].lr}
    assert sn.choice_updates({**now, "inputNode": dwi}, now) == {"codec": "fmri"}
    assert sn.choice_updates({**now, "inputNode": dwi}, {**now, "codec": "lossless"}) == {}
    assert sn.choice_updates({**now, "inputNode": dwi}, {**now, "inputNode": scene.AddNewNodeByClass(
        "vtkMRMLScalarVolumeNode")}) == {}


def test_reader_shows_what_it_loads(app_logic, archive_path, monkeypatch):
    """As Slicer's volume reader (qSlicerVolumesReader.cxx: unless properties["show"] is false, the node becomes
    the selection node's active volume and PropagateVolumeSelection puts it in the slice views)."""
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(applicationLogic=lambda: app_logic), raising=False)
    selection = app_logic.GetSelectionNode()
    parent = FakeParent()
    assert slicer_files.SirenCompressFileReader(parent).load({"fileName": str(archive_path), "show": False})
    assert selection.GetActiveVolumeID() is None
    assert slicer_files.SirenCompressFileReader(parent).load({"fileName": str(archive_path)})
    assert selection.GetActiveVolumeID() == parent.loadedNodes[0]
    assert selection.GetActiveTableID() == parent.loadedNodes[1]


def test_panel_progress_from_cli_events():
    progress = sn.Progress()
    assert progress.update({"event": "start", "networks": 2, "slices": 2, "device": "cpu"}) == \
        ["Training 2 networks on cpu"]
    progress.update({"event": "epoch", "slice": 0, "slices": 2, "epoch": 50, "epochs": 100, "psnr": 30.0})
    assert progress.percent == 25 and progress.status.startswith("slice 1/2, epoch 50/100, 30.0 dB")
    assert progress.update({"event": "slice", "slice": 0, "kind": "network", "bytes": 900}) == \
        ["slice 1: network, 900 bytes"]
    progress.update({"event": "epoch", "slice": 1, "slices": 2, "epoch": 100, "epochs": 100, "psnr": 30.0})
    assert progress.percent == 100


def test_child_process_has_no_console_window_on_windows(monkeypatch):
    """Slicer's `launchConsoleProcess` (Base/Python/slicer/util.py) hides the child's console on Windows:
    STARTUPINFO with dwFlags = 1 (STARTF_USESHOWWINDOW) and wShowWindow = 0 (SW_HIDE)."""
    class StartupInfo:
        dwFlags, wShowWindow = 0, 1

    monkeypatch.setattr(jobs.os, "name", "nt")
    monkeypatch.setattr(jobs.subprocess, "STARTUPINFO", StartupInfo, raising=False)
    monkeypatch.setattr(jobs.subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200, raising=False)
    options = jobs.popen_options()
    assert options["startupinfo"].dwFlags & 1 and options["startupinfo"].wShowWindow == 0
    assert options["creationflags"] == 0x200


def test_node_to_file_matches_the_library_reader(scene, tmp_path):
    """A sequence exported for the child process reads back with its frame index."""
    volume = sequence_volume()
    sequence, _ = sn.nodes_from_volume(volume, "fmri", scene)
    write_volume(sn.volume_from_node(sequence), tmp_path / "x.nrrd")
    assert read_volume(tmp_path / "x.nrrd").frames == volume.frames



def test_rate_flags_and_the_noise_line(scene):
    """The panel's rate target as compress flags (noise in per cent of σ²), refused for a codec that cannot aim
    at it; the panel's line on the input's noise σ, or why it is unknown."""
    assert sn.rate_flags("transform", "none", 0.0) == ()
    assert sn.rate_flags("transform", "noise", 10.0) == ("--target-noise", "0.1")
    assert sn.rate_flags("siren", "psnr", 45.0) == ("--target-psnr", "45.0")
    with pytest.raises(InputError, match="lossless codec cannot aim at an added noise"):
        sn.rate_flags("lossless", "noise", 10.0)
    with pytest.raises(InputError, match="must be positive"):
        sn.rate_flags("transform", "ratio", 0.0)
    assert sn.noise_text(None) == ""
    assert sn.noise_text(dwi_node(scene, phantom())).startswith("scanner noise σ ")
    few = sn.nodes_from_volume(Volume4D(np.random.default_rng(0).normal(100, 10, (8, 8, 2, 5)).astype(np.float32),
                                        np.eye(4)), "few", scene)[0]
    assert "at least 10 volumes" in sn.noise_text(few)


def test_report_gives_the_added_noise_per_slice(scene):
    """An archive that records σ gets D/σ² and SNR loss columns (as added_noise); one without, none."""
    from SirenCompressLib.pipeline import added_noise

    volume = phantom()
    archive = compress(volume, "transform")
    table = sn.add_report(archive, "dwi", scene).table
    added = added_noise(archive)
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table, "D/σ²"),
                               [s["noise_fraction"] for s in added["slices"]])
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table, "SNR loss"),
                               [s["snr_loss"] for s in added["slices"]])
    plain = sn.add_report(compress(volume, "transform", noise=False), "plain", scene).table
    assert plain.GetNumberOfColumns() == 5
