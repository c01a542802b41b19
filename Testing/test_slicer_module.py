"""The module script itself, imported headless: Slicer's GUI packages (qt, ctk, ScriptedLoadableModule,
parameterNodeWrapper, i18n) do not exist outside Slicer, so they are replaced by bare stand-ins here; the
widget is exercised by SirenCompressTest inside Slicer."""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs the slicer-core package (installed by `make test`)")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

import vtk  # noqa: E402

from conftest import REPO  # noqa: E402
from SirenCompressLib import SIREN_PRESETS, SirenConfig, Volume4D, slicer_nodes  # noqa: E402
from SirenCompressLib.codecs import lossless  # noqa: E402
from SirenCompressLib.phantom import dwi_phantom  # noqa: E402


@pytest.fixture
def module(monkeypatch):
    """SirenCompress.py imported with stand-ins for the GUI-only packages."""
    def stub(name, **attrs):
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    class Base:
        def __init__(self, parent=None):
            self.parent = parent

    stub("qt")
    stub("slicer.ScriptedLoadableModule", ScriptedLoadableModule=Base, ScriptedLoadableModuleWidget=Base,
         ScriptedLoadableModuleLogic=Base, ScriptedLoadableModuleTest=Base)
    stub("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
    stub("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls,
         **{name: (lambda *args: args) for name in ("Choice", "Decimals", "SingleStep", "WithinRange")})
    monkeypatch.syspath_prepend(str(REPO / "SirenCompress"))
    monkeypatch.delitem(sys.modules, "SirenCompress", raising=False)
    return importlib.import_module("SirenCompress")


def test_module_exposes_reader_writer_and_logic(module):
    assert module.SirenCompressFileReader.__module__ == "SirenCompressLib.slicer_nodes"
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
    assert logic.outputPathFor(node, Path(".")) == tmp_path / "scenes" / "dwi_siren.sirz"


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
