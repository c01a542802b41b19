"""The module script itself, imported headless: Slicer's GUI packages (qt, ctk, ScriptedLoadableModule,
parameterNodeWrapper, i18n) do not exist outside Slicer, so they are replaced by bare stand-ins here; the
widget is exercised by SirenCompressTest inside Slicer."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer", reason="needs the slicer-core package (installed by `make test`)")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

from conftest import REPO  # noqa: E402
from SirenCompressLib import SIREN_PRESETS, SirenConfig  # noqa: E402


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


def test_output_path(module, tmp_path, monkeypatch):
    node = types.SimpleNamespace(GetName=lambda: "dwi")
    logic = module.SirenCompressLogic
    assert logic.outputPathFor(node, tmp_path / "x.sirz") == tmp_path / "x.sirz"
    assert logic.outputPathFor(node, tmp_path) == tmp_path / "dwi_siren.sirz"
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(defaultScenePath=str(tmp_path / "scenes")), raising=False)
    assert logic.outputPathFor(node, Path(".")) == tmp_path / "scenes" / "dwi_siren.sirz"
