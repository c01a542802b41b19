"""Shared fixtures: a phantom written as real files, the real in-vivo sample, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from SirenCompressLib import SirenConfig, Volume4D, write_volume
from SirenCompressLib.phantom import dwi_phantom
from SirenCompressLib.sample import copy_sample

REPO = Path(__file__).resolve().parents[1]

# Small and quick: tests check behaviour, not quality.
FAST = SirenConfig(layers=2, units=64, epochs=60, lr=3e-3, device="cpu")
# siren's, with its default (compact) preset: named, as diffusion data would get transform
FAST_ARGS = ["--codec", "siren", "--layers", "2", "--units", "64", "--epochs", "60", "--qat-epochs", "10", "--lr",
             "3e-3", "--device", "cpu", "--progress", "none"]


def phantom(**kwargs) -> Volume4D:
    """A small noisy int16 DWI phantom with 7 directions at two shells (15 volumes)."""
    options = dict(shape=(16, 14, 3), directions=7, bvalues=(1000.0, 2000.0), noise=0.02, seed=1)
    options.update(kwargs)
    return dwi_phantom(**options)


@pytest.fixture
def phantom_nifti(tmp_path: Path) -> Path:
    path = tmp_path / "phantom.nii.gz"
    write_volume(phantom(), path)
    return path


@pytest.fixture(scope="session")
def sample_nifti(tmp_path_factory) -> Path:
    """The real in-vivo dMRI sample (mdt's b1k_b2k), copied to a temporary folder."""
    return copy_sample(tmp_path_factory.mktemp("sample"))


@pytest.fixture
def app_logic():
    """Slicer's application logic on a fresh scene that is also `slicer.mrmlScene`, with the Colors and
    Sequences logics that volume and sequence nodes use (slicer-core)."""
    import slicer

    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app.SetModuleLogic("Colors", colors)
    sequences = slicer.vtkSlicerSequencesLogic()
    sequences.SetMRMLScene(scene)
    sequences.SetMRMLApplicationLogic(app)
    app.SetModuleLogic("Sequences", sequences)
    yield app
    scene.Clear(1)
    del colors, sequences


@pytest.fixture
def scene(app_logic):
    """The fresh `slicer.mrmlScene` of `app_logic`."""
    return app_logic.GetMRMLScene()


class FakeParent:
    """Stands in for Slicer's qSlicerScriptedFileReader/Writer: the attributes the bodies use."""

    def __init__(self):
        import slicer

        self.loadedNodes, self.writtenNodes = [], []
        self.messages = slicer.vtkMRMLMessageCollection()

    def userMessages(self):
        return self.messages


def run_cli(*args: str | os.PathLike, block_torch: bool = False, timeout: float = 300,
            stdin: str = "") -> subprocess.CompletedProcess:
    """Run `sirencompress ARGS` in a child process, `stdin` on its standard input; with block_torch,
    importing torch fails there."""
    code = "import sys\n"
    if block_torch:
        code += "sys.modules['torch'] = None\n"
    code += "from SirenCompressLib.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, input=stdin)


def leftovers(folder: Path) -> list[str]:
    """Partial (temporary) files left in a folder."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".partial-")]


def assert_same_geometry(a: Volume4D, b: Volume4D) -> None:
    assert a.shape == b.shape
    assert a.data.dtype == b.data.dtype
    np.testing.assert_allclose(a.ijk_to_ras, b.ijk_to_ras, atol=1e-5)
    assert (a.gradients is None) == (b.gradients is None)
    if a.gradients is not None:
        np.testing.assert_allclose(a.gradients.bvals, b.gradients.bvals, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(a.gradients.directions_ras(a.ijk_to_ras),
                                   b.gradients.directions_ras(b.ijk_to_ras), atol=1e-6)
