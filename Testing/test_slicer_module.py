"""The module script itself, imported headless. Slicer's GUI packages (qt, ctk, ScriptedLoadableModule,
parameterNodeWrapper, i18n) do not exist outside Slicer, so they are replaced by small stand-ins; the
parameter node class is checked against the wrapper's rules read from Slicer's source, and the widget's
logic runs with stand-in widgets on a real slicer-core scene and the real CLI child process. The Qt side
itself is exercised by SirenCompressTest inside Slicer."""

from __future__ import annotations

import importlib
import json
import sys
import time
import types
import typing
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs the slicer-core package (installed by `make test`)")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

import vtk  # noqa: E402

from conftest import REPO, phantom  # noqa: E402
from SirenCompressLib import SIREN_PRESETS, SirenConfig, Volume4D, slicer_files, slicer_nodes  # noqa: E402
from SirenCompressLib.codecs import lossless  # noqa: E402
from SirenCompressLib.phantom import dwi_phantom  # noqa: E402


class WithinRange:
    """Stand-in for slicer.parameterNodeWrapper.validators.WithinRange (inclusive range)."""

    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"{value} not in [{self.minimum}, {self.maximum}]")


class Choice:
    """Stand-in for slicer.parameterNodeWrapper.validators.Choice."""

    def __init__(self, choices):
        self.choices = choices

    def validate(self, value) -> None:
        if value not in self.choices:
            raise ValueError(f"{value} not in {self.choices}")


def parameter_node_wrapper(cls):
    """Stand-in for @parameterNodeWrapper: instances wrap a vtkMRMLScriptedModuleNode (observers go to it)
    and hold the class's defaults as plain attributes; connectGui binds nothing."""
    def init(self, node):
        self.parameterNode = node
        for name in typing.get_type_hints(cls):
            setattr(self, name, cls.__dict__.get(name))

    cls.__init__ = init
    cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(
        event, callback, priority)
    cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    cls.connectGui = lambda self, gui: 1
    cls.disconnectGui = lambda self, tag: None
    return cls


class Base:
    def __init__(self, parent=None):
        self.parent = parent


class LogicBase(Base):
    def getParameterNode(self):
        """As ScriptedLoadableModuleLogic.getParameterNode (Base/Python/slicer/ScriptedLoadableModule.py):
        the scene's singleton scripted module node of the module, created when missing."""
        node = slicer.mrmlScene.GetSingletonNode("SirenCompress", "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag("SirenCompress")
            node = slicer.mrmlScene.AddNode(node)
        return node


@pytest.fixture
def module(monkeypatch):
    """SirenCompress.py imported with stand-ins for the GUI-only packages."""
    def stub(name, **attrs):
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    stub("qt", Qt=types.SimpleNamespace(WaitCursor=0))
    stub("slicer.ScriptedLoadableModule", ScriptedLoadableModule=Base, ScriptedLoadableModuleWidget=Base,
         ScriptedLoadableModuleLogic=LogicBase, ScriptedLoadableModuleTest=Base)
    stub("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
    stub("slicer.parameterNodeWrapper", parameterNodeWrapper=parameter_node_wrapper, Choice=Choice,
         WithinRange=WithinRange)
    monkeypatch.syspath_prepend(str(REPO / "SirenCompress"))
    monkeypatch.delitem(sys.modules, "SirenCompress", raising=False)
    return importlib.import_module("SirenCompress")


def test_module_exposes_reader_writer_and_logic(module):
    assert module.SirenCompressFileReader.__module__ == "SirenCompressLib.slicer_files"
    assert issubclass(module.SirenCompressFileWriter, slicer_files.SirenCompressFileWriter)
    assert module.SirenCompressFileWriter(None).fileType() == "SirenCompressArchive"


def test_parameter_defaults_are_the_codec_defaults(module):
    p = module.SirenCompressParameterNode
    config = module.SirenCompressLogic.configFromParameters(p)
    assert config == SIREN_PRESETS["compact"]
    defaults = {name: getattr(p, name) for name in p.__annotations__ if hasattr(p, name)}
    paper = types.SimpleNamespace(**{**defaults, "preset": "paper", "learningRate": SIREN_PRESETS["paper"].lr})
    assert module.SirenCompressLogic.configFromParameters(paper) == SirenConfig()


def test_lossless_codec_in_the_panel(module):
    p = module.SirenCompressParameterNode
    defaults = {name: getattr(p, name) for name in p.__annotations__ if hasattr(p, name)}
    chosen = types.SimpleNamespace(**{**defaults, "codec": "lossless", "quantizeStep": 0.5})
    config = module.SirenCompressLogic.configFromParameters(chosen)
    assert isinstance(config, lossless.Config) and config.quantize == 0.5
    assert module.SirenCompressLogic.configFromParameters(
        types.SimpleNamespace(**{**defaults, "codec": "lossless"})).quantize is None
    fmri_config = module.SirenCompressLogic.configFromParameters(types.SimpleNamespace(**{**defaults, "codec": "fmri"}))
    assert fmri_config.units == defaults["units"] and fmri_config.epochs == defaults["epochs"]


def test_output_path(module, tmp_path, monkeypatch):
    node = types.SimpleNamespace(GetName=lambda: "dwi")
    logic = module.SirenCompressLogic
    assert logic.outputPathFor(node, tmp_path / "x.sirz") == tmp_path / "x.sirz"
    assert logic.outputPathFor(node, tmp_path) == tmp_path / "dwi_siren.sirz"
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(defaultScenePath=str(tmp_path / "scenes")), raising=False)
    default = module.SirenCompressParameterNode.outputPath
    assert default == "" and logic.outputPathFor(node, default) == tmp_path / "scenes" / "dwi_siren.sirz"


def test_evaluate_writes_the_report_and_loads_the_maps(module, tmp_path, monkeypatch):
    pytest.importorskip("dipy", reason="needs dipy (the dmri and test extras)")
    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    volume = dwi_phantom(shape=(16, 16, 3), directions=16, bvalues=(1000.0, 2000.0), noise=0.02)
    original = slicer_nodes.nodes_from_volume(volume, "dwi", scene)[0]
    decoded = slicer_nodes.nodes_from_volume(Volume4D(volume.data // 2 * 2, volume.ijk_to_ras, volume.gradients),
                                             "dwi_siren", scene)[0]
    maps = module.SirenCompressLogic().evaluate(original, decoded, tmp_path / "fidelity", archiveBytes=4000)
    assert all(node.GetScene() is scene for node in maps.values())
    assert set(maps) == {"MD", "FA", "RISH0", "RISH2", "angle", "tissues"}
    assert maps["tissues"].IsA("vtkMRMLLabelMapVolumeNode") and maps["FA"].GetName() == "dwi_siren FA error"
    report = json.loads((tmp_path / "fidelity" / "fidelity.json").read_text())
    assert [r["name"] for r in report["rows"]][::3] == ["dwi_siren", "JPEG 2000 same size"]
    fa = slicer.util.arrayFromVolume(maps["FA"])  # (z, y, x)
    assert fa.shape == (3, 16, 16) and np.abs(fa).max() > 0
    labels = slicer.util.arrayFromVolume(maps["tissues"])
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    matrix = vtk.vtkMatrix4x4()
    maps["FA"].GetIJKToRASMatrix(matrix)
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(matrix), volume.ijk_to_ras)


# Defaults the wrapper's serializers give a field without one (serializers.py: NumberSerializer 0,
# StringSerializer "", PathSerializer type(), BoolSerializer False, NodeSerializer None).
SERIALIZER_DEFAULTS = {int: 0, float: 0, str: "", bool: False, Path: Path()}


def split(hint):
    """(type, annotations) of a possibly Annotated type hint."""
    if typing.get_origin(hint) is typing.Annotated:
        return typing.get_args(hint)[0], typing.get_args(hint)[1:]
    return hint, ()


def is_node(t) -> bool:
    return isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode)


def test_parameter_node_follows_the_wrapper_rules(module):
    """Rules of Slicer's parameterNodeWrapper (5.10 and main; Base/Python/slicer/parameterNodeWrapper/):
    - wrapper.py `_processClass`: annotations other than validators, a serializer or a Default are logged as
      "Unused annotations" (Decimals and SingleStep, read only by GUI connectors, are among them).
    - wrapper.py `_initMethod` writes every default into a new parameter node through the validated serializer;
      without `= value` the default is the serializer's (UnionSerializer.default: its first member's, None for
      a node type).
    - serializers.py `UnionSerializer._findBestSerializer`: only a NoneSerializer member writes None, so a union
      of node types must contain None (util.py `isNodeOrUnionOfNodes`: "the None is necessary").
    - validators.py: WithinRange and Choice check the default too; NumberSerializer accepts int or float for float."""
    cls = module.SirenCompressParameterNode
    hints = typing.get_type_hints(cls, include_extras=True)
    assert hints
    for name, hint in hints.items():
        kind, annotations = split(hint)
        assert all(isinstance(a, (WithinRange, Choice)) for a in annotations), f"{name}: unused annotation"
        members = typing.get_args(kind) if typing.get_origin(kind) is typing.Union else (kind,)
        if len(members) > 1 and any(map(is_node, members)):
            assert type(None) in members, f"{name}: a union of node types needs None"
        default = cls.__dict__[name] if name in cls.__dict__ else (
            None if is_node(members[0]) else SERIALIZER_DEFAULTS[members[0]])
        if default is None:
            assert is_node(kind) or type(None) in members, f"{name}: default None cannot be written"
            continue
        allowed = (int, float) if kind is float else kind
        assert isinstance(default, allowed), name
        for validator in annotations:
            validator.validate(default)


def ui_widgets() -> dict[str, tuple[str, dict]]:
    """Parameter name → (widget class, the widget's .ui properties)."""
    ui = ET.parse(REPO / "SirenCompress" / "Resources" / "UI" / "SirenCompress.ui")
    bound = {}
    for widget in ui.iter("widget"):
        props = {p.get("name"): next(iter(p)).text for p in widget.findall("property")}
        if "SlicerParameterName" in props:
            bound[props["SlicerParameterName"]] = (widget.get("class"), props)
    return bound


def test_each_widget_accepts_exactly_what_its_parameter_accepts(module):
    """Connectors of guiConnectors.py (Slicer 5.10): QSpinBox ↔ int, QDoubleSpinBox ↔ float (minimum and maximum
    set from WithinRange after the .ui's decimals; Qt's QDoubleSpinBox rounds both to `decimals`, 2 unless set),
    QComboBox ↔ str with a Choice, qMRMLNodeComboBox ↔ node types, QLineEdit ↔ str (any text, "" included).
    No ctkPathLineEdit: ctkPathLineEdit.cpp emits currentPathChanged only for text its validator accepts (the name
    filters' pattern, or ".+"), so an emptied field never reaches the parameter node."""
    hints = typing.get_type_hints(module.SirenCompressParameterNode, include_extras=True)
    for name, (widget, props) in ui_widgets().items():
        kind, annotations = split(hints[name])
        ranges = [a for a in annotations if isinstance(a, WithinRange)]
        if widget == "QDoubleSpinBox":
            decimals = int(props.get("decimals", 2))
            assert kind is float and ranges, name
            for value in (ranges[0].minimum, ranges[0].maximum, module.SirenCompressParameterNode.__dict__[name]):
                assert round(value, decimals) == value, f"{name}: {value} shown as {round(value, decimals)}"
        elif widget == "QSpinBox":
            assert kind is int and ranges, name
        elif widget == "QComboBox":
            assert kind is str and any(isinstance(a, Choice) for a in annotations), name
        elif widget == "qMRMLNodeComboBox":
            assert props.get("noneEnabled") == "true" and type(None) in typing.get_args(kind), name
        else:
            assert (widget, kind) == ("QLineEdit", str), name


class FakeWidget(types.SimpleNamespace):
    """What the widget code sets and calls on its Qt widgets."""

    def __init__(self):
        super().__init__(text="", enabled=True, value=0, lines=[])

    def appendPlainText(self, text):
        self.lines.append(text)

    def clear(self):
        self.lines.clear()

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


class FakeUi:
    def __getattr__(self, name):
        widget = FakeWidget()
        setattr(self, name, widget)
        return widget


@pytest.fixture
def widget(module, scene, tmp_path, monkeypatch):
    """The panel's widget object with stand-in Qt widgets on a real scene, and no parameter node yet."""
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(
        setOverrideCursor=lambda cursor: None, restoreOverrideCursor=lambda: None, testingEnabled=lambda: True,
        defaultScenePath=str(tmp_path)), raising=False)
    shown = []
    monkeypatch.setattr(module.SirenCompressLogic, "show", staticmethod(lambda loaded, original=None: shown.append(
        (loaded, original))))
    w = module.SirenCompressWidget()
    w.ui, w.timer, w.logic, w.shown = FakeUi(), FakeWidget(), module.SirenCompressLogic(), shown
    return w


def test_widget_logic_runs_without_a_parameter_node(widget, scene):
    """Between a scene's StartCloseEvent and a new parameter node, every handler must cope with None."""
    assert widget._parameterNode is None
    widget.onParameterNodeModified()
    assert widget.ui.compressButton.enabled is False and widget.ui.evaluateButton.enabled is False
    widget.onCompressButton()
    widget.onEvaluateButton()
    widget.onSceneStartClose(scene, None)
    assert widget.task is None and widget.ui.logTextEdit.lines == []


def test_connecting_the_panel_changes_no_value(widget, scene):
    """Connecting (setup, each enter, after a scene close) keeps the user's learning rate and codec; a
    preset the user then picks brings its own learning rate."""
    dwi = slicer_nodes.nodes_from_volume(phantom(), "dwi", scene)[0]
    p = widget.logic.getParameterNode()
    p.preset, p.learningRate, p.codec, p.inputNode = "paper", 0.0123, "fmri", dwi
    widget.setParameterNode(p)
    assert (p.learningRate, p.codec) == (0.0123, "fmri")
    assert widget.ui.compressButton.enabled is True
    p.preset = "compact"
    widget.onParameterNodeModified()
    assert p.learningRate == SIREN_PRESETS["compact"].lr and p.codec == "fmri"


def test_scene_closed_during_a_compression(widget, scene, tmp_path):
    """The real CLI child keeps running across a scene close; its result is loaded into the new scene without
    the (gone) original, the temporary copy is removed, and the panel has a parameter node again."""
    dwi = slicer_nodes.nodes_from_volume(phantom(), "dwi", scene)[0]
    widget.setParameterNode(widget.logic.getParameterNode())
    p = widget._parameterNode
    p.inputNode, p.layers, p.units, p.epochs, p.device, p.outputPath = dwi, 1, 8, 20, "cpu", str(tmp_path)
    widget.onCompressButton()
    task = widget.task
    assert task is not None and task.running and widget.ui.compressButton.text == "Cancel"
    folder = task.folder
    widget.onSceneStartClose(scene, None)
    scene.Clear(0)
    widget.onSceneEndClose(scene, None)
    assert widget._parameterNode is not None and widget._parameterNode.inputNode is None
    while widget.task is not None:
        widget.onPoll()
        time.sleep(0.1)
    assert (tmp_path / "dwi_siren.sirz").exists() and not Path(folder).exists()
    (loaded, original), = widget.shown
    assert original is None and loaded.nodes[0].GetScene() is scene
    assert "Compression ratio" in widget.ui.resultLabel.text and widget.compressed is None
    assert widget.ui.compressButton.text == "Compress" and widget.ui.compressButton.enabled is False


def test_panel_noise_target_with_the_real_child_process(widget, scene, tmp_path):
    """Choosing an input shows its noise σ; the noise target (in per cent of σ²) reaches the CLI child, whose
    archive meets it; the result line gives the added noise and the report its columns."""
    dwi = slicer_nodes.nodes_from_volume(phantom(), "dwi", scene)[0]
    widget.setParameterNode(widget.logic.getParameterNode())
    p = widget._parameterNode
    p.inputNode, p.codec, p.outputPath = dwi, "transform", str(tmp_path)
    widget.onParameterNodeModified()
    assert widget.ui.noiseLabel.text.startswith("scanner noise σ ")
    p.rateTarget = "noise"
    widget.onParameterNodeModified()
    assert p.targetValue == slicer_nodes.TARGET_DEFAULTS["noise"] and widget.ui.targetValueSpinBox.enabled
    p.targetValue = 30.0
    widget.onCompressButton()
    while widget.task is not None:
        widget.onPoll()
        time.sleep(0.1)
    (loaded, original), = widget.shown
    added = slicer_nodes.added_noise(loaded.archive)
    assert 0.95 * 0.3 <= added["noise_fraction"] <= 0.3
    assert "added noise" in widget.ui.resultLabel.text and "SNR loss" in widget.ui.resultLabel.text
    assert loaded.report.table.GetColumnIndex("D/σ²") >= 0
