"""SirenCompress: compress 4D MRI (diffusion, fMRI, any sequence) with per-slice sine networks.

A thin Slicer layer over SirenCompressLib: training runs in a child process (the library's CLI), never in
Slicer's GUI thread; decoding and opening `.sirz` files need numpy only.
"""

import importlib.util
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Union

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# A source checkout used through "Additional module paths" keeps the library beside this folder;
# an installed extension has it in the scripted-modules folder, which is on sys.path already.
if importlib.util.find_spec("SirenCompressLib") is None:
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from SirenCompressLib import slicer_files, slicer_nodes, slicer_scene  # noqa: E402
from SirenCompressLib.codecs import DEFAULT, exact_codec, get_codec  # noqa: E402
from SirenCompressLib.errors import SirenCompressError  # noqa: E402
from SirenCompressLib.slicer_files import SirenCompressFileReader  # noqa: E402, F401

TORCH_REQUIREMENT = ">=2.1"
LIBRARY_PACKAGES = (("nrrd", "pynrrd"), ("skimage", "scikit-image"), ("nibabel", "nibabel"))  # (module, package)
DMRI_PACKAGES = (("dipy", "dipy"), ("threadpoolctl", "threadpoolctl"), ("imagecodecs", "imagecodecs"))  # Evaluate


class SirenCompress(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SirenCompress")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Diffusion")]
        self.parent.dependencies = []  # PyTorch is asked for on the first compression, not to load
        self.parent.contributors = ["SirenCompress developers"]
        self.parent.helpText = _(
            "Compress a diffusion-weighted volume, a sequence or a multivolume into a small .sirz file by fitting "
            "a sine-activation network to each axial slice, then look at the decoded data and a per-slice error "
            "report. .sirz files open by drag-and-drop or Add Data. "
            '<a href="https://github.com/SirenCompress/SlicerSirenCompress#using-it-in-3d-slicer">Documentation</a>.')
        self.parent.acknowledgementText = _(
            "Codec after Mancini, Jones and Palombo, 'Lossy compression of multidimensional medical images using "
            "sinusoidal activation networks: an evaluation study' (2022).")


@parameterNodeWrapper
class SirenCompressParameterNode:
    """The panel's settings; names shared with SirenCompressLib.slicer_nodes.PANEL_PARAMETERS. Spinbox
    decimals and steps are set in the .ui (the wrapper logs Decimals/SingleStep as unused annotations)."""

    inputNode: Union[vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode, None]
    codec: Annotated[str, Choice(list(slicer_nodes.PANEL_CODECS))] = DEFAULT
    quantizeStep: Annotated[float, WithinRange(0.0, 1e9)] = 0.0
    preset: Annotated[str, Choice(slicer_nodes.PANEL_PRESETS)] = slicer_nodes.DEFAULT_PRESET
    layers: Annotated[int, WithinRange(1, 16)] = 3
    units: Annotated[int, WithinRange(4, 2048)] = 256
    epochs: Annotated[int, WithinRange(1, 1000000)] = 2000
    learningRate: Annotated[float, WithinRange(1e-6, 1.0)] = get_codec(DEFAULT).default_config().lr
    finalActivation: Annotated[str, Choice(["identity", "relu"])] = "identity"
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    rateTarget: Annotated[str, Choice(list(slicer_nodes.PANEL_TARGETS))] = "none"
    targetValue: Annotated[float, WithinRange(0.0, 100000.0)] = 0.0  # ratio, dB, or % of the noise variance
    outputPath: str = ""  # empty: <input>_siren.sirz in the default scene folder; a folder: that file in it


class SirenCompressWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.task = None
        self.compressed = None  # (input node, Loaded, archive path) of the last compression, for Evaluate
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._choices = None  # the panel's choices last seen, to follow a change the user makes
        self._noise = (None, "")  # (input node, the line on its noise) last shown
        self._progress = slicer_nodes.Progress()

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SirenCompress.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SirenCompressLogic()
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.onPoll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.compressButton.connect("clicked(bool)", self.onCompressButton)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        self.ui.outputBrowseButton.connect("clicked(bool)", self.onOutputBrowse)
        self.ui.deviceLabel.text = self.logic.detectedDevice()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.compressed = None  # its nodes go with the scene; a running compression goes on

    def onSceneEndClose(self, caller, event) -> None:
        """A new parameter node at once, entered or not: a running compression and the self-test need it."""
        self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: SirenCompressParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = inputParameterNode
        self._choices = None
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Follow a choice the user changed (connecting the GUI changes nothing), then update the buttons."""
        p = self._parameterNode
        if p is not None:
            before, self._choices = self._choices, {"preset": p.preset, "inputNode": p.inputNode, "codec": p.codec,
                                                    "rateTarget": p.rateTarget}
            for name, value in slicer_nodes.choice_updates(before, self._choices).items():
                setattr(p, name, value)
            if p.inputNode is not self._noise[0]:
                self._noise = (p.inputNode, self.logic.noiseText(p.inputNode))
        self.ui.noiseLabel.text = self._noise[1] if p is not None else ""
        self._updateButton()

    def _updateButton(self) -> None:
        p = self._parameterNode
        node = p.inputNode if p is not None else None
        self.ui.evaluateButton.enabled = bool(
            self.task is None and self.compressed and node is not None and self.compressed[0].GetID() == node.GetID()
            and self.compressed[1].nodes[0].IsA("vtkMRMLDiffusionWeightedVolumeNode"))
        if self.task is not None:
            self.ui.compressButton.text = _("Cancel")
            self.ui.compressButton.enabled = True
            return
        self.ui.compressButton.text = _("Compress")
        if p is None:
            self.ui.inputInfoLabel.text = ""
            self.ui.compressButton.enabled = False
            return
        own = slicer_nodes.panel_fields(p.codec)
        self.ui.networkCollapsibleButton.enabled = "layers" in own
        self.ui.presetComboBox.enabled = bool(get_codec(p.codec).PRESETS)
        self.ui.finalActivationComboBox.enabled = "final_activation" in own
        self.ui.quantizeSpinBox.enabled = "quantize" in own
        self.ui.rateTargetComboBox.enabled = bool(get_codec(p.codec).RATE_CONTROL)
        self.ui.targetValueSpinBox.enabled = p.rateTarget != "none"
        try:
            kind = slicer_nodes.input_kind(node)
        except SirenCompressError as exc:
            self.ui.inputInfoLabel.text = str(exc)
            self.ui.compressButton.enabled = False
            return
        self.ui.inputInfoLabel.text = {"dwi": _("diffusion-weighted volume"), "sequence": _("sequence of volumes"),
                                       "multivolume": _("multivolume (decoded as a sequence)")}[kind]
        self.ui.compressButton.enabled = True

    def onOutputBrowse(self) -> None:
        if self._parameterNode is None:
            return
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save the archive as"),
                                              self._parameterNode.outputPath, slicer_nodes.NAME_FILTER)
        if path:
            self._parameterNode.outputPath = path

    def onCompressButton(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self._log(_("Cancelled; no file was written."))
            self._stop()
            return
        p = self._parameterNode
        if p is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Cannot start the compression."), waitCursor=True):
            self.logic.ensureDependencies()
            output = self.logic.outputPathFor(p.inputNode, p.outputPath)
            self.compressed = None
            self.task = self.logic.startCompress(p.inputNode, output, self.logic.configFromParameters(p), p.codec,
                                                 slicer_nodes.rate_flags(p.codec, p.rateTarget, p.targetValue))
            self.ui.logTextEdit.clear()
            self._log(_("Compressing {name} to {path}").format(name=p.inputNode.GetName(), path=output))
            self._progress = slicer_nodes.Progress()
            self.ui.progressBar.value = 0
            self.timer.start()
        self._updateButton()

    def onPoll(self) -> None:
        """Progress of the running compression; at its end, load the result (into whatever scene is open)."""
        for event in self.task.poll():
            for line in self._progress.update(event):
                self._log(line)
            self.ui.progressBar.value = self._progress.percent
            self.ui.statusLabel.text = self._progress.status
        if self.task.running:
            return
        task = self._stop()
        try:
            loaded = self.logic.finishCompress(task)
        except SirenCompressError as exc:
            self._log(_("Failed: {error}").format(error=exc))
            self.ui.statusLabel.text = str(exc)
            return
        whole, added = loaded.archive.manifest["metrics"], slicer_nodes.added_noise(loaded.archive)
        self.ui.resultLabel.text = _("Compression ratio {ratio:.1f} (raw 16-bit); PSNR {psnr} dB; SSIM {ssim}").format(
            ratio=loaded.ratio, psnr=f"{whole['psnr']:.2f}" if whole["psnr"] is not None else "∞",
            ssim=f"{whole['ssim']:.4f}" if whole["ssim"] is not None else "n/a") + ("" if added is None else _(
                "; added noise {fraction:.3g} σ² (SNR loss {loss:.2f} %)").format(
                fraction=added["noise_fraction"], loss=added["snr_loss"]))
        self._log(_("Done: {name}").format(name=loaded.nodes[0].GetName()))
        original = task.node if task.node.GetScene() is slicer.mrmlScene else None  # None: the scene was closed
        self.logic.show(loaded, original=original)
        self.compressed = (original, loaded, task.output_path) if original is not None else None
        self._updateButton()

    def onEvaluateButton(self) -> None:
        if self.compressed is None:
            return
        original, loaded, archive = self.compressed
        folder = archive.with_name(archive.name.removesuffix(".sirz") + "_fidelity")
        self._log(_("Evaluating DTI and RISH errors against MP-PCA, smoothing and JPEG 2000 (a minute or two)"))
        with slicer.util.tryWithErrorDisplay(_("The evaluation failed."), waitCursor=True):
            maps = self.logic.evaluate(original, loaded.nodes[0], folder, archiveBytes=loaded.archive_bytes)
            slicer.util.setSliceViewerLayers(background=maps["FA"], label=maps["tissues"], labelOpacity=0.3)
            self._log(_("Report: {path}").format(path=folder / "report.md"))

    def _stop(self):
        task, self.task = self.task, None
        self.timer.stop()
        self._updateButton()
        return task

    def _log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)


class SirenCompressLogic(ScriptedLoadableModuleLogic):
    """Compress nodes and open archives; the console API:

        logic = slicer.util.getModuleLogic("SirenCompress")
        loaded = logic.compress(node, layers=3, units=256, epochs=500)   # blocks; returns nodes + report
        loaded = logic.decompress("/path/to/file.sirz")
        logic.saveScene("/path/to/scene.sirz")          # the whole scene; logic.loadScene(path) opens it
    """

    def getParameterNode(self):
        return SirenCompressParameterNode(super().getParameterNode())

    def compress(self, node, outputPath=None, preset: str = slicer_nodes.DEFAULT_PRESET, layers: int = 3,
                 units: int = 256,
                 epochs: int = 2000, learningRate: float | None = None, finalActivation: str = "identity",
                 device: str = "auto", seed: int = 0, progress=None, codec: str = DEFAULT,
                 quantizeStep: float = 0.0, rateTarget: str = "none",
                 targetValue: float = 0.0) -> slicer_nodes.Loaded:
        """Compress `node` (blocking) and return the decoded node(s), report table and chart. `preset`
        gives the other settings of a codec with presets; learningRate None: the preset's. An exact codec needs
        integer voxels, or quantizeStep > 0 for float voxels; a codec takes the settings it has. rateTarget
        "ratio", "psnr" or "noise" aims at targetValue: a compression ratio, a PSNR in dB, or an added error
        variance in per cent of the scanner's noise variance."""
        self.ensureDependencies()
        base = slicer_nodes.panel_config(preset, codec)
        config = slicer_nodes.panel_config(preset, codec=codec, quantize=quantizeStep, layers=layers, units=units,
                                           epochs=epochs, lr=learningRate or getattr(base, "lr", None),
                                           final_activation=finalActivation, device=device, seed=seed)
        output = self.outputPathFor(node, outputPath)
        return slicer_nodes.compress_node(node, output, config, on_event=progress, python=self.python(), codec=codec,
                                          flags=slicer_nodes.rate_flags(codec, rateTarget, targetValue))

    def decompress(self, path, name=None) -> slicer_nodes.Loaded:
        """Open a .sirz file into new nodes (numpy only)."""
        return slicer_nodes.load_archive(path, name)

    def saveScene(self, path, codec: str | None = None, preset: str | None = None, force: bool = True,
                  **settings) -> None:
        """Save the whole scene as one .sirz (blocking, in this process): 4D nodes with `codec` and its settings
        (None: the codec suggested for each), 3D volumes and label maps losslessly, the rest as Slicer saves it."""
        self.ensureDependencies()
        slicer_scene.save_scene(path, slicer.mrmlScene, codec, preset, force, **settings)

    def loadScene(self, path) -> list:
        """Add the scene of a scene archive to the current scene; returns the nodes added."""
        return slicer_scene.load_scene(path)

    def evaluate(self, originalNode, decodedNode, folder, archiveBytes=None, references: bool = True) -> dict:
        """DTI (FA, MD, direction) and RISH errors of `decodedNode` against `originalNode` per tissue, beside
        MP-PCA, smoothing and (given the archive's size) JPEG 2000 (blocking): writes report.md, fidelity.json,
        figures and NIfTI error maps into `folder` and returns the loaded nodes by name: "MD", "FA", "RISH0",
        "RISH2" (relative error, %), "angle" (degrees) and "tissues" (label map: 1 CSF, 2 GM, 3 WM)."""
        self.ensurePackages(DMRI_PACKAGES)
        return slicer_nodes.evaluate_nodes(originalNode, decodedNode, folder, archiveBytes, references)

    def startCompress(self, node, outputPath, config, codec: str | None = None,
                      flags: tuple[str, ...] = ()) -> slicer_nodes.NodeCompression:
        return slicer_nodes.NodeCompression(node, outputPath, config, python=self.python(), codec=codec,
                                            flags=flags).start()

    @staticmethod
    def noiseText(node) -> str:
        """The estimated noise σ of a node's data, in words (empty for no node)."""
        return slicer_nodes.noise_text(node)

    def finishCompress(self, task: slicer_nodes.NodeCompression) -> slicer_nodes.Loaded:
        return task.finish()

    @staticmethod
    def configFromParameters(p):
        return slicer_nodes.panel_config(p.preset, codec=p.codec, quantize=p.quantizeStep, layers=p.layers,
                                         units=p.units, epochs=p.epochs,
                                         lr=p.learningRate, final_activation=p.finalActivation, device=p.device)

    @staticmethod
    def outputPathFor(node, outputPath=None) -> Path:
        """The chosen .sirz path, or `<input>_siren.sirz` in Slicer's default scene folder."""
        given = Path(outputPath) if outputPath else None
        if given is not None and not given.is_dir():
            return given
        folder = given or Path(slicer.app.defaultScenePath)
        return folder / f"{node.GetName()}{slicer_nodes.SUFFIX}.sirz"

    @staticmethod
    def python() -> str:
        """Slicer's Python launcher for the child process (it sets up Slicer's environment)."""
        return shutil.which("PythonSlicer") or sys.executable

    @staticmethod
    def detectedDevice() -> str:
        if importlib.util.find_spec("torch") is None:
            return _("PyTorch not installed yet (installed on the first compression)")
        import torch

        if torch.cuda.is_available():
            return _("GPU: {name}").format(name=torch.cuda.get_device_name(0))
        return _("CPU only (no CUDA GPU found)")

    @staticmethod
    def ensurePackages(packages) -> None:
        """pip-install those of the (module, package) pairs whose module is missing, asking the user first."""
        missing = [name for module, name in packages if importlib.util.find_spec(module) is None]
        if missing:
            if not slicer.util.confirmOkCancelDisplay(
                    _("SirenCompress needs these Python packages: {names}. Install them now?").format(
                        names=", ".join(missing))):
                raise SirenCompressError("the required Python packages were not installed")
            slicer.util.pip_install(" ".join(missing))

    @classmethod
    def ensureDependencies(cls) -> None:
        """Install torch through the PyTorch extension (asking the user) and the library's other needs."""
        cls.ensurePackages(LIBRARY_PACKAGES)
        if importlib.util.find_spec("torch") is not None:
            return
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            raise SirenCompressError("compressing needs the PyTorch extension; install it from the Extensions Manager")
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True,
                                                         torchVersionRequirement=TORCH_REQUIREMENT) is None:
            raise SirenCompressError("PyTorch is needed to compress and was not installed")

    @staticmethod
    def show(loaded: slicer_nodes.Loaded, original=None) -> None:
        """Decoded volume in the slice views (the original as foreground, opacity 0, to fade between them),
        the report table and PSNR chart in the layout, all placed beside the original in the data tree."""
        shown = slicer_nodes.shown_volume(loaded)
        foreground = original if original is not None and original.IsA("vtkMRMLVolumeNode") else None
        slicer.util.setSliceViewerLayers(background=shown, foreground=foreground, foregroundOpacity=0.0, fit=True)
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetActiveTableID(loaded.report.table.GetID())
        selection.SetActivePlotChartID(loaded.report.chart.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()
        slicer.app.applicationLogic().PropagatePlotChartSelection()
        if original is not None:
            hierarchy = slicer.mrmlScene.GetSubjectHierarchyNode()
            parent = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(original))
            for node in loaded.all_nodes:
                item = hierarchy.GetItemByDataNode(node)
                if item:
                    hierarchy.SetItemParent(item, parent)


class SirenCompressFileWriter(slicer_files.SirenCompressFileWriter):
    """The library's writer, run from Slicer's Save dialog or `slicer.util.saveNode`: installs what is
    missing first (asking), trains in Slicer's Python launcher, and shows progress with Cancel meanwhile."""

    def prepare(self) -> None:
        SirenCompressLogic.ensureDependencies()

    def python(self) -> str:
        return SirenCompressLogic.python()

    @contextmanager
    def scene_progress(self):
        """A progress dialog with Cancel while the scene is compressed (in Slicer's process: events are processed
        between the codec's steps)."""
        dialog = qt.QProgressDialog(_("Saving the scene"), _("Cancel"), 0, 100, slicer.util.mainWindow())
        dialog.setWindowModality(qt.Qt.ApplicationModal)
        dialog.minimumDuration = 0
        tracker = slicer_nodes.SceneProgress()

        def update(event: dict) -> None:
            tracker.update(event)
            dialog.value, dialog.labelText = tracker.percent, tracker.status
            slicer.app.processEvents()
            if dialog.wasCanceled:
                raise SirenCompressError(_("saving cancelled; no file was written"))

        try:
            yield update
        finally:
            dialog.close()

    def wait(self, task: slicer_nodes.NodeCompression) -> None:
        progress = slicer_nodes.Progress()
        dialog = qt.QProgressDialog(_("Compressing {name} (training networks)").format(name=task.node.GetName()),
                                    _("Cancel"), 0, 100, slicer.util.mainWindow())
        dialog.setWindowModality(qt.Qt.ApplicationModal)
        dialog.minimumDuration = 0
        try:
            while task.running:
                for event in task.poll():
                    progress.update(event)
                dialog.value, dialog.labelText = progress.percent, progress.status or dialog.labelText
                slicer.app.processEvents()
                if dialog.wasCanceled:
                    task.cancel()
                time.sleep(0.1)
        finally:
            dialog.close()


class SirenCompressTest(ScriptedLoadableModuleTest):
    """In-Slicer test: console API, file reader, and the panel driven end to end (small settings)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_console_compress_and_open()
        self.setUp()
        self.test_panel_compress_and_cancel()
        self.setUp()
        self.test_panel_lossless()
        self.setUp()
        self.test_console_fmri()
        self.setUp()
        self.test_save_node_as_archive()
        self.setUp()
        self.test_panel_scene_closed_during_compression()
        self.setUp()
        self.test_save_and_open_scene()

    def _phantomNode(self):
        from SirenCompressLib.phantom import dwi_phantom

        volume = dwi_phantom(shape=(24, 24, 2), directions=7, bvalues=(1000.0, 2000.0), noise=0.02)
        node = slicer_nodes.nodes_from_volume(volume, "phantom", slicer.mrmlScene)[0]
        return node

    def test_console_compress_and_open(self):
        self.delayDisplay("Console: compress a phantom DWI, then open the archive")
        node = self._phantomNode()
        path = Path(slicer.app.temporaryPath) / "SirenCompressTest.sirz"
        logic = SirenCompressLogic()
        loaded = logic.compress(node, outputPath=path, layers=2, units=32, epochs=30, device="cpu")
        self.assertEqual(loaded.nodes[0].GetName(), "phantom_siren")
        self.assertEqual(loaded.nodes[0].GetNumberOfGradients(), 15)
        self.assertEqual(loaded.report.table.GetNumberOfRows(), 2)
        opened = slicer.util.loadNodeFromFile(str(path), "SirenCompressArchive")
        self.assertTrue(opened.IsA("vtkMRMLDiffusionWeightedVolumeNode"))
        path.unlink()

    def test_panel_compress_and_cancel(self):
        self.delayDisplay("Panel: compress with the Compress button, then cancel a long run")
        node = self._phantomNode()
        widget = slicer.modules.sirencompress.widgetRepresentation().self()
        path = Path(slicer.app.temporaryPath) / "SirenCompressPanel.sirz"
        p = widget._parameterNode
        p.inputNode, p.layers, p.units, p.epochs, p.device, p.outputPath = node, 2, 32, 30, "cpu", str(path)
        widget.ui.compressButton.click()
        while widget.task is not None:
            slicer.app.processEvents()
        self.assertTrue(path.exists())
        self.assertIn("Compression ratio", widget.ui.resultLabel.text)
        self.assertTrue(widget.ui.evaluateButton.enabled)
        path.unlink()
        p.epochs = 100000
        widget.ui.compressButton.click()
        self.assertFalse(widget.ui.evaluateButton.enabled)
        for _unused in range(50):
            slicer.app.processEvents()
            qt.QThread.msleep(100)
        widget.ui.compressButton.click()  # Cancel
        self.assertIsNone(widget.task)
        self.assertFalse(path.exists())
        self.delayDisplay("Test passed")

    def test_console_fmri(self):
        self.delayDisplay("Console: the codec suggested for a sequence of 50 frames (fmri)")
        from SirenCompressLib.fmri_phantom import fmri_phantom

        sequence = slicer_nodes.nodes_from_volume(fmri_phantom(shape=(16, 16, 2), frames=50).volume, "bold",
                                                  slicer.mrmlScene)[0]
        codec = slicer_nodes.suggested_codec(sequence)
        self.assertNotEqual(codec, DEFAULT)
        path = Path(slicer.app.temporaryPath) / "SirenCompressFmri.sirz"
        loaded = SirenCompressLogic().compress(sequence, outputPath=path, codec=codec, layers=2, units=16,
                                               epochs=20, device="cpu")
        self.assertEqual(loaded.nodes[0].GetNumberOfDataNodes(), 50)
        path.unlink()

    def test_panel_lossless(self):
        self.delayDisplay("Panel: the lossless codec gives back the voxels exactly")
        node = self._phantomNode()
        widget = slicer.modules.sirencompress.widgetRepresentation().self()
        path = Path(slicer.app.temporaryPath) / "SirenCompressLossless.sirz"
        p = widget._parameterNode
        exact = next(name for name in slicer_nodes.PANEL_CODECS if get_codec(name).EXACT)
        p.inputNode, p.codec, p.outputPath = node, exact, str(path)
        self.assertFalse(widget.ui.networkCollapsibleButton.enabled)
        widget.ui.compressButton.click()
        while widget.task is not None:
            slicer.app.processEvents()
        decoded = widget.compressed[1].nodes[0]
        self.assertTrue((slicer.util.arrayFromVolume(decoded) == slicer.util.arrayFromVolume(node)).all())
        p.codec = DEFAULT
        path.unlink()
        self.delayDisplay("Test passed")

    def test_save_node_as_archive(self):
        self.delayDisplay("Save: the .sirz writer compresses with the panel's settings; opening shows the volume")
        node = self._phantomNode()
        p = SirenCompressLogic().getParameterNode()
        p.codec, p.layers, p.units, p.epochs, p.device = DEFAULT, 1, 16, 10, "cpu"
        path = Path(slicer.app.temporaryPath) / "SirenCompressSaved.sirz"
        self.assertTrue(slicer.util.saveNode(node, str(path), {"fileType": slicer_nodes.FILE_TYPE}))
        self.assertEqual(node.GetStorageNode().GetFileName(), str(path))
        opened = slicer.util.loadNodeFromFile(str(path), slicer_nodes.FILE_TYPE)
        self.assertEqual(slicer.app.applicationLogic().GetSelectionNode().GetActiveVolumeID(), opened.GetID())
        path.unlink()

    def test_panel_scene_closed_during_compression(self):
        self.delayDisplay("Panel: the scene is closed while compressing; the result is loaded into the new scene")
        node = self._phantomNode()
        widget = slicer.modules.sirencompress.widgetRepresentation().self()
        path = Path(slicer.app.temporaryPath) / "SirenCompressClosed.sirz"
        p = widget._parameterNode
        p.inputNode, p.codec, p.layers, p.units, p.epochs, p.device, p.outputPath = \
            node, DEFAULT, 1, 16, 20, "cpu", str(path)
        widget.ui.compressButton.click()
        slicer.mrmlScene.Clear()
        self.assertIsNotNone(widget._parameterNode)
        while widget.task is not None:
            slicer.app.processEvents()
        self.assertTrue(path.exists())
        self.assertEqual(len(slicer.util.getNodesByClass("vtkMRMLDiffusionWeightedVolumeNode")), 1)
        self.assertFalse(widget.ui.compressButton.enabled)  # the new scene has no input selected
        path.unlink()
        self.delayDisplay("Test passed")

    def test_save_and_open_scene(self):
        self.delayDisplay("Scene: saved as one .sirz through the IO manager (the Save dialog's path: this module's "
                          "writer, its progress dialog), opened again through the file reader")
        node = self._phantomNode()
        labels = slicer.util.addVolumeFromArray((slicer.util.arrayFromVolume(node)[..., 0] > 500).astype("uint8"),
                                                name="mask", nodeClassName="vtkMRMLLabelMapVolumeNode")
        mask = slicer.util.arrayFromVolume(labels).copy()
        path = Path(slicer.app.temporaryPath) / "SirenCompressScene.sirz"
        self.assertTrue(slicer.app.coreIOManager().saveNodes(slicer_nodes.FILE_TYPE, {"fileName": str(path)}))
        slicer.mrmlScene.Clear()
        slicer.util.loadNodeFromFile(str(path), slicer_nodes.FILE_TYPE)
        self.assertEqual(len(slicer.util.getNodesByClass("vtkMRMLDiffusionWeightedVolumeNode")), 1)
        self.assertTrue((slicer.util.arrayFromVolume(slicer.util.getNode("mask")) == mask).all())
        SirenCompressLogic().saveScene(path, codec=exact_codec())  # the console's path
        slicer.mrmlScene.Clear()
        slicer.util.loadNodeFromFile(str(path), slicer_nodes.FILE_TYPE)
        self.assertEqual(len(slicer.util.getNodesByClass("vtkMRMLDiffusionWeightedVolumeNode")), 1)
        path.unlink()
        self.delayDisplay("Test passed")
