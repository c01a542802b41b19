"""Volume4D ⇄ 3D Slicer MRML nodes, the per-slice report (table + chart), and the bodies of the
`.sirz` file reader and writer that the Slicer module registers.

Needs `slicer` (inside Slicer, or the PyPI package slicer-core); nothing here uses Qt, so it runs
headless. The library itself never imports this module.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .archive import Archive, read_archive
from .codecs import DEFAULT, REGISTRY, codec_of, configure, get_codec, suggest
from .errors import InputError, SirenCompressError
from .io import write_volume
from .jobs import CompressJob, compress_command
from .noise import GLOBAL_BLOCKS, estimate_noise
from .pipeline import added_noise, decompress, sizes, stored_comparison
from .progress import slice_coded
from .rate import TARGETS, supports
from .volume import FrameIndex, Gradients, Volume4D, unit_rows

FILE_TYPE = "SirenCompressArchive"
NAME_FILTER = "SirenCompress archive (*.sirz)"
MODULE_NAME = "SirenCompress"
SUFFIX = "_siren"
MULTIVOLUME_LABELS = "MultiVolume.FrameLabels"
PANEL_CODECS = tuple(REGISTRY)  # the panel's codec choices
PANEL_PRESETS = sorted({p for name in REGISTRY for p in get_codec(name).PRESETS})  # of the codecs with presets
DEFAULT_PRESET = get_codec(DEFAULT).DEFAULT_PRESET
# Codec setting → name of the module panel's parameter (SirenCompressParameterNode field).
PANEL_PARAMETERS = {"layers": "layers", "units": "units", "epochs": "epochs", "lr": "learningRate",
                    "final_activation": "finalActivation", "device": "device"}
PANEL_TARGETS = ("none", *TARGETS)  # the panel's rate targets (`rate.TARGETS`, the flags --target-NAME)
TARGET_DEFAULTS = {"none": 0.0, "ratio": 20.0, "psnr": 45.0, "noise": 10.0}  # the value a chosen target starts at


def panel_fields(codec: str) -> set[str]:
    """The settings (Config field names) of a codec, which say which of the panel's widgets apply to it."""
    return {f.name for f in fields(get_codec(codec).Config)}


def suggested_codec(node) -> str:
    """The codec `codecs.suggest` names for a node: a DWI volume has gradients; a sequence or multivolume has
    as many volumes as frames."""
    kind = input_kind(node)
    if kind == "sequence":
        frames = node.GetNumberOfDataNodes()
    else:
        frames = node.GetImageData().GetNumberOfScalarComponents()
    return suggest(kind == "dwi", frames)


def choice_updates(before: dict | None, after: dict) -> dict:
    """Panel values to set after the user changed a choice (`before` → `after`, dicts of the parameters
    "preset", "inputNode", "codec" and "rateTarget"; `before` None: the panel was just connected, nothing
    changes): a new preset brings its learning rate ("learningRate"; the chosen codec's preset, else that of the
    first codec with such a preset); a new input is offered its suggested codec unless an exact codec is chosen;
    a new rate target starts at its default value ("targetValue", `TARGET_DEFAULTS`)."""
    if before is None:
        return {}
    updates = {}
    owner = next((get_codec(name) for name in (after["codec"], *REGISTRY)
                  if after["preset"] in get_codec(name).PRESETS), None)
    if after["preset"] != before["preset"] and owner is not None:
        updates["learningRate"] = owner.PRESETS[after["preset"]].lr
    if after["inputNode"] is not before["inputNode"] and after["inputNode"] is not None and \
            not get_codec(after["codec"]).EXACT:
        try:
            updates["codec"] = suggested_codec(after["inputNode"])
        except InputError:
            pass  # not compressible: the panel says why
    if after["rateTarget"] != before["rateTarget"]:
        updates["targetValue"] = TARGET_DEFAULTS[after["rateTarget"]]
    return updates


def rate_flags(codec: str, target: str, value: float) -> tuple[str, ...]:
    """The `compress` flags of the panel's rate target: none, a compression ratio, a PSNR in dB, or an added noise
    in per cent of the noise variance σ² (--target-noise value/100).

    Parameters
    ----------
    codec : str
        The chosen codec.
    target : str
        One of `PANEL_TARGETS`.
    value : float
        The target's value, positive unless `target` is "none".

    Returns
    -------
    tuple of str

    Raises
    ------
    InputError
        When the codec cannot aim at the target, or the value is not positive.
    """
    if target == "none":
        return ()
    supports(codec, target)
    if not value > 0:
        raise InputError(f"the {target} target must be positive, not {value:g}")
    return f"--target-{target}", repr(value / 100 if target == "noise" else value)


def noise_text(node) -> str:
    """One line on the noise of a node's data for the panel: σ (`estimate_noise`) in data units and in per cent of
    the range, or why it cannot be estimated; empty for no node."""
    if node is None:
        return ""
    try:
        noise = estimate_noise(volume_from_node(node), most_blocks=GLOBAL_BLOCKS)
    except SirenCompressError as exc:
        return f"noise σ unknown: {exc}"
    return f"scanner noise σ {noise.sigma:.4g} ({noise.percent_of_range:.2g} % of the range)"


def input_kind(node) -> str:
    """"dwi", "sequence" or "multivolume"; `InputError` saying why for anything else (None, a scene, …)."""
    if not isinstance(node, slicer.vtkMRMLNode):
        raise InputError("select an input: a diffusion-weighted volume, a sequence of volumes or a multivolume")
    if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is None:
        raise InputError(f"'{node.GetName()}' holds no voxels")
    if node.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
        return "dwi"
    if node.IsA("vtkMRMLSequenceNode"):
        items = [node.GetNthDataNode(i) for i in range(node.GetNumberOfDataNodes())]
        if not items or not all(item.IsA("vtkMRMLScalarVolumeNode") for item in items):
            raise InputError(f"sequence '{node.GetName()}' must hold scalar volumes to be compressed")
        return "sequence"
    if node.IsA("vtkMRMLVolumeNode"):
        components = node.GetImageData().GetNumberOfScalarComponents()
        if components > 1 and (node.IsA("vtkMRMLMultiVolumeNode") or node.GetAttribute(MULTIVOLUME_LABELS)):
            return "multivolume"
        if components == 1:
            raise InputError(f"'{node.GetName()}' is a single 3D volume; SirenCompress compresses 4D data "
                             "(a diffusion-weighted volume, a sequence of volumes or a multivolume)")
    raise InputError(f"'{node.GetName()}' ({node.GetClassName()}) cannot be compressed; choose a "
                     "diffusion-weighted volume, a sequence of volumes or a multivolume")


def volume_from_node(node) -> Volume4D:
    """The node's voxels (x, y, z, v), geometry, gradients or frame index, as a Volume4D (a copy)."""
    kind = input_kind(node)
    if kind == "sequence":
        items = [node.GetNthDataNode(i) for i in range(node.GetNumberOfDataNodes())]
        arrays = [_voxels(item)[..., 0] for item in items]
        if len({a.shape for a in arrays}) != 1:
            raise InputError(f"the volumes of sequence '{node.GetName()}' differ in size")
        frames = FrameIndex(node.GetIndexName() or "frame", node.GetIndexUnit() or "",
                            [node.GetNthIndexValue(i) for i in range(len(items))])
        return Volume4D(np.stack(arrays, axis=-1), _ijk_to_ras(items[0]), frames=frames)
    volume = Volume4D(_voxels(node), _ijk_to_ras(node))
    if kind == "dwi":
        frame = vtk.vtkMatrix4x4()
        node.GetMeasurementFrameMatrix(frame)
        volume.gradients = Gradients(numpy_support.vtk_to_numpy(node.GetBValues()).astype(float),
                                     numpy_support.vtk_to_numpy(node.GetDiffusionGradients()).astype(float),
                                     "nrrd", slicer.util.arrayFromVTKMatrix(frame)[:3, :3])
    else:
        labels = [s for s in (node.GetAttribute(MULTIVOLUME_LABELS) or "").split(",") if s]
        if len(labels) == volume.shape[3]:
            volume.frames = FrameIndex(node.GetAttribute("MultiVolume.FrameIdentifyingDICOMTagName") or "frame",
                                       node.GetAttribute("MultiVolume.FrameIdentifyingDICOMTagUnits") or "", labels)
    return volume


def nodes_from_volume(volume: Volume4D, name: str, scene=None) -> list:
    """New nodes holding `volume`: a DWI node when it has gradients, else a sequence and its browser."""
    scene = scene or slicer.mrmlScene
    if volume.gradients is not None:
        node = scene.AddNewNodeByClass("vtkMRMLDiffusionWeightedVolumeNode", scene.GenerateUniqueName(name))
        fill_dwi(node, volume)
        node.CreateDefaultDisplayNodes()
        return [node]
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(name))
    fill_sequence(sequence, volume)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(name + " browser"))
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    _sequences_logic(scene).UpdateProxyNodesFromSequences(browser)
    return [sequence, browser]


def fill_dwi(node, volume: Volume4D) -> None:
    """Give a DWI node the voxels, geometry and gradients of `volume` (which has gradients)."""
    fill_volume(node, volume)
    g = volume.gradients
    if g.convention == "fsl":  # Slicer keeps directions in a measurement frame: use RAS itself
        g = Gradients(g.bvals, g.directions_ras(volume.ijk_to_ras), "nrrd", np.eye(3))
    node.SetNumberOfGradients(volume.shape[3])
    node.SetBValues(numpy_support.numpy_to_vtk(np.ascontiguousarray(g.bvals), deep=True))
    directions = numpy_support.numpy_to_vtk(np.ascontiguousarray(unit_rows(g.bvecs)), deep=True)
    node.SetDiffusionGradients(directions)  # Slicer accepts only unit or zero vectors
    frame = np.eye(4)
    frame[:3, :3] = g.measurement_frame
    node.SetMeasurementFrameMatrix(slicer.util.vtkMatrixFromArray(frame))


def fill_volume(node, volume: Volume4D) -> None:
    """Give a volume node the voxels (volumes as components) and geometry of `volume`."""
    _set_voxels(node, volume.data)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(volume.ijk_to_ras))


def fill_sequence(sequence, volume: Volume4D) -> None:
    """Fill an empty sequence node with one scalar volume per volume of `volume`, at its frame index values."""
    scene = sequence.GetScene()
    frames = volume.frames or FrameIndex("frame", "", [str(i) for i in range(volume.shape[3])])
    sequence.SetIndexName(frames.name)
    sequence.SetIndexUnit(frames.unit)
    item = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    try:
        item.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(volume.ijk_to_ras))
        for v, value in enumerate(frames.values):
            _set_voxels(item, volume.data[..., v:v + 1])
            sequence.SetDataNodeAtValue(item, value)  # stores a copy
    finally:
        scene.RemoveNode(item)


@dataclass
class Report:
    table: object  # vtkMRMLTableNode
    chart: object  # vtkMRMLPlotChartNode
    series: object  # vtkMRMLPlotSeriesNode


def add_report(archive: Archive, name: str, scene=None) -> Report:
    """Per-slice table (slice, MSE, PSNR, SSIM, member bytes; with the noise σ recorded at encode, the added
    error D/σ² and the SNR loss) and a PSNR-per-slice chart of an archive."""
    scene = scene or slicer.mrmlScene
    comparison = stored_comparison(archive)
    slices = archive.manifest["slices"]
    added = added_noise(archive)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name + " report"))
    columns = [np.arange(len(slices), dtype=np.int32),
               np.array([m.mse for m in comparison.slices]),
               np.array([m.psnr for m in comparison.slices]),
               np.array([np.nan if m.ssim is None else m.ssim for m in comparison.slices]),
               np.array([s["bytes"] for s in slices], dtype=np.int32)]
    names = ["slice", "MSE", "PSNR", "SSIM", "bytes"]
    if added is not None:
        columns += [np.array([s[key] for s in added["slices"]]) for key in ("noise_fraction", "snr_loss")]
        names += ["D/σ²", "SNR loss"]
    slicer.util.updateTableFromArray(table, columns, names)
    table.SetColumnUnitLabel("PSNR", "dB")
    table.SetColumnDescription("PSNR", "20·log10(1/RMSE), data scaled to [0, 1] by the original's min and max")
    table.SetColumnDescription("bytes", "bytes of the slice's member in the archive; 0 where the slice is decoded "
                                        "from a member stored with an earlier slice (its slab's or the volume's)")
    if added is not None:
        table.SetColumnDescription("D/σ²", f"the slice's mean squared error over the noise variance, σ = "
                                           f"{added['sigma']:.4g} ({added['method']})")
        table.SetColumnUnitLabel("SNR loss", "%")
        table.SetColumnDescription("SNR loss", "100·(1 − 1/√(1 + D/σ²)): how much the codec's error lowers the SNR")
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(name + " PSNR"))
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName("slice")
    series.SetYColumnName("PSNR")
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(name + " PSNR per slice"))
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle("PSNR per slice")
    chart.SetXAxisTitle("slice")
    chart.SetYAxisTitle("PSNR (dB)")
    return Report(table, chart, series)


@dataclass
class Loaded:
    """What opening an archive added to the scene."""

    nodes: list  # the image node(s): a DWI node, or a sequence and its browser
    report: Report
    archive: Archive
    archive_bytes: int
    all_nodes: list = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return sizes(self.archive, self.archive_bytes).ratio_raw16


def load_archive(path: str | os.PathLike, name: str | None = None, scene=None) -> Loaded:
    """Decode a .sirz (numpy only) into new nodes and its report; on failure nothing stays in the scene."""
    scene = scene or slicer.mrmlScene
    path = Path(path)
    name = name or (path.name[: -len(".sirz")] if path.name.endswith(".sirz") else path.stem)
    archive = read_archive(path)
    volume = decompress(archive)
    created = []
    try:
        created += nodes_from_volume(volume, name, scene)
        report = add_report(archive, name, scene)
        created += [report.table, report.series, report.chart]
    except Exception:
        for node in created:
            scene.RemoveNode(node)
        raise
    return Loaded(created[:-3], report, archive, path.stat().st_size, created)


def shown_volume(loaded: Loaded):
    """The volume node to put in the views: the DWI node, or the proxy volume of the sequence's browser."""
    node = loaded.nodes[0]
    return loaded.nodes[1].GetProxyNode(node) if node.IsA("vtkMRMLSequenceNode") else node


def show_loaded(loaded: Loaded, app_logic) -> None:
    """Show what a file load added, as Slicer's volume reader does (qSlicerVolumesReader.cxx): the volume
    becomes the selection's active volume and the selection is propagated to the slice views; the report
    becomes the active table and chart."""
    selection = app_logic.GetSelectionNode()
    selection.SetActiveVolumeID(shown_volume(loaded).GetID())
    selection.SetActiveTableID(loaded.report.table.GetID())
    selection.SetActivePlotChartID(loaded.report.chart.GetID())
    app_logic.PropagateVolumeSelection()


def reference_archive(node, path: str | os.PathLike) -> None:
    """Point the node's storage node at the archive it was written to, as Slicer's own writers do, so
    that a scene saved afterwards references the `.sirz` file."""
    if node.GetStorageNode() is None:
        node.AddDefaultStorageNode()
    storage = node.GetStorageNode()
    if storage is None:
        raise SirenCompressError(f"'{node.GetName()}' has no storage node that could reference {path}")
    storage.SetFileName(str(path))


def evaluate_nodes(original, decoded, folder: str | os.PathLike, archive_bytes: int | None = None,
                   references: bool = True, scene=None) -> dict:
    """dMRI fidelity of the DWI node `decoded` against the DWI node `original` (blocking; see
    `evaluate.dmri`): writes the report into `folder` (replacing an earlier one) and loads the decoded
    image's error maps and the tissue labels (see `load_fidelity_maps`)."""
    from .evaluate.dmri import dmri_fidelity
    from .evaluate.dmri_report import write_fidelity_report

    for node in (original, decoded):
        if input_kind(node) != "dwi":
            raise InputError(f"'{node.GetName()}' is not a diffusion-weighted volume; the dMRI evaluation needs one")
    result = dmri_fidelity(volume_from_node(original), volume_from_node(decoded), references=references,
                           archive_bytes=archive_bytes, name=decoded.GetName())
    write_fidelity_report(result, folder, force=True)
    return load_fidelity_maps(folder, scene)


def load_fidelity_maps(folder: str | os.PathLike, scene=None) -> dict:
    """New nodes for a fidelity report's first row: its error maps as scalar volumes (keys "MD", "FA", "RISH0",
    "RISH2": relative error in %; "angle": degrees) and the tissue labels as a label map ("tissues")."""
    import nibabel as nib

    from .evaluate.dmri_report import JSON

    scene = scene or slicer.mrmlScene
    folder = Path(folder)
    document = json.loads((folder / JSON).read_text())
    name = document["rows"][0]["name"]
    files = [(metric, f"{name} {metric} error", "vtkMRMLScalarVolumeNode", file)
             for metric, file in document["files"]["maps"][name].items()]
    files.append(("tissues", f"{name} tissues", "vtkMRMLLabelMapVolumeNode", document["files"]["tissues"]))
    nodes = {}
    for key, label, kind, file in files:
        image = nib.load(str(folder / file))
        node = scene.AddNewNodeByClass(kind, scene.GenerateUniqueName(label))
        _set_voxels(node, np.asarray(image.dataobj)[..., None])
        node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(image.affine))
        node.CreateDefaultDisplayNodes()
        nodes[key] = node
    return nodes


class NodeCompression:
    """Compress a node in a child process: export it, run the CLI, then load the archive as new nodes.

    `start()`, then `poll()` for progress events (or `wait()`), then `finish()` for the `Loaded` result;
    `cancel()` at any time leaves no output file. `config` is a registered codec's settings; `codec`, if
    given, must be that codec (`InputError` otherwise).
    """

    def __init__(self, node, output_path: str | os.PathLike, config, python: str | None = None,
                 codec: str | None = None, flags: tuple[str, ...] = ()) -> None:
        input_kind(node)
        self.node, self.output_path, self.config, self.flags = node, Path(output_path), config, tuple(flags)
        self.codec = codec_of(config, codec)
        self.python = python
        self.folder: str | None = None
        self.job: CompressJob | None = None

    def start(self) -> NodeCompression:
        self.folder = tempfile.mkdtemp(prefix="sirencompress-")
        try:
            source = Path(self.folder) / "input.nrrd"
            write_volume(volume_from_node(self.node), source)
            extra = {"python": self.python} if self.python else {}
            self.job = CompressJob(*compress_command(source, self.output_path, self.codec, self.config.to_json(),
                                                     flags=self.flags, **extra)).start()
        except BaseException:
            self.close()
            raise
        return self

    def poll(self) -> list[dict]:
        return self.job.poll()

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def wait(self, on_event=None) -> int:
        return self.job.wait(on_event)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
        self.close()

    def complete(self) -> None:
        """Wait for the child to end and remove the temporary copy; `SirenCompressError` if it did not
        write the archive."""
        try:
            code = self.job.wait()
            if self.job.cancelled:
                raise SirenCompressError("compression cancelled; no file was written")
            if code != 0:
                raise SirenCompressError(self.job.error or f"compression failed (exit code {code})")
        finally:
            self.close()

    def finish(self, scene=None) -> Loaded:
        """After the child ended: the decoded nodes (named `<input>_siren`) and report, or `SirenCompressError`."""
        self.complete()
        return load_archive(self.output_path, self.node.GetName() + SUFFIX, scene)

    def close(self) -> None:
        """Remove the temporary copy of the input."""
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


class Progress:
    """Turns the CLI's progress events into a percentage, a status line and log lines (for the panel
    and the file writer's progress dialog)."""

    def __init__(self) -> None:
        self.percent, self.status = 0, ""
        self._networks, self._done, self._slices = 1, 0, 1
        self._per_slice = False  # no networks to train: progress counts slices

    def update(self, event: dict) -> list[str]:
        """Take one event; returns the lines it adds to a log."""
        kind = event.get("event")
        if kind == "start":
            self._networks, self._done, self._slices = max(event["networks"], 1), 0, event["slices"]
            self._per_slice = not event["networks"]
            if event["networks"]:
                return [f"Training {event['networks']} networks on {event['device']}"]
            return [f"Coding {event['slices']} slices losslessly"]
        if kind == "epoch":
            fraction = (self._done + event.get("batch_size", 1) * event["epoch"] / event["epochs"]) / self._networks
            self.percent = int(100 * fraction)
            eta = event.get("eta_s")
            left = "" if eta is None else f", {int(eta) // 60}m{int(eta) % 60:02d}s left"
            self.status = (f"slice {event['slice'] + 1}/{event['slices']}, epoch {event['epoch']}/{event['epochs']}, "
                           f"{event['psnr']:.1f} dB{left}")
        elif kind == "slice":
            self._done += event["kind"] == "network"
            if self._per_slice:
                self.percent = int(100 * (event["slice"] + 1) / self._slices)
                self.status = f"slice {event['slice'] + 1}/{self._slices}"
            return [f"slice {event['slice'] + 1}: {slice_coded(event)}"]
        elif kind == "error":
            return [event["message"]]
        return []


class SceneProgress:
    """Turns `slicer_scene.save_scene`'s progress events into a percentage and a status line: the nodes done,
    and the one being compressed as `Progress` follows it."""

    def __init__(self) -> None:
        self.percent, self.status = 0, ""
        self._node, self._index, self._nodes, self._name = Progress(), 0, 1, ""

    def update(self, event: dict) -> None:
        """Take one event."""
        if event.get("event") == "node":
            self._node, self._index, self._nodes, self._name = Progress(), event["index"], event["nodes"], event["name"]
        else:
            self._node.update(event)
        self.percent = int(100 * (self._index + self._node.percent / 100) / self._nodes)
        self.status = f"{self._name} ({self._index + 1}/{self._nodes})" + \
            (f": {self._node.status}" if self._node.status else "")


def compress_node(node, output_path: str | os.PathLike, config=None, on_event=None, python: str | None = None,
                  scene=None, codec: str | None = None, flags: tuple[str, ...] = ()) -> Loaded:
    """Blocking form: compress `node` to `output_path` with `config` (default: the default settings of `codec`,
    else of the default codec) and return the decoded nodes and report. `codec` None: the codec whose
    settings `config` are; `flags`: further `compress` flags (`rate_flags`)."""
    config = config or get_codec(codec or DEFAULT).default_config()
    task = NodeCompression(node, output_path, config, python, codec, flags).start()
    try:
        task.wait(on_event)
    except BaseException:
        task.cancel()
        raise
    return task.finish(scene)


def panel_config(preset: str | None = None, codec: str = DEFAULT, quantize: float = 0.0, **settings):
    """The panel's codec settings: the codec's preset (None: its default; ignored by a codec without presets)
    with those of the panel's settings (Config field names) that the codec has on top; `quantize`, the
    quantisation step of float input (0: none), for a codec that has one."""
    if codec not in PANEL_CODECS:
        raise InputError(f"the panel offers the codecs {', '.join(PANEL_CODECS)}, not {codec!r}")
    module = get_codec(codec)
    own = panel_fields(codec)
    given = {k: v for k, v in {**settings, "quantize": quantize or None}.items() if k in own}
    return configure(codec, given, preset if module.PRESETS else None)


def settings_from_scene(scene=None) -> tuple[str, object]:
    """The module panel's current codec and its settings (its parameter node), or the default codec's."""
    scene = scene or slicer.mrmlScene
    node = scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
    if node is None:
        return DEFAULT, get_codec(DEFAULT).default_config()
    codec = node.GetParameter("codec") or DEFAULT
    preset = node.GetParameter("preset") or None
    base = panel_config(preset, codec)
    values = {}
    for key, parameter in PANEL_PARAMETERS.items():
        text = node.GetParameter(parameter)
        if text and hasattr(base, key):
            values[key] = type(getattr(base, key))(text)
    return codec, panel_config(preset, codec, quantize=float(node.GetParameter("quantizeStep") or 0), **values)


def rate_flags_from_scene(scene=None) -> tuple[str, ...]:
    """The `compress` flags of the module panel's rate target (its parameter node; `rate_flags`), or none.

    Raises
    ------
    InputError
        As `rate_flags`.
    """
    scene = scene or slicer.mrmlScene
    node = scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
    if node is None:
        return ()
    return rate_flags(node.GetParameter("codec") or DEFAULT, node.GetParameter("rateTarget") or "none",
                      float(node.GetParameter("targetValue") or 0))


def _voxels(node) -> np.ndarray:
    """(x, y, z, components) copy of a volume node's voxels."""
    image = node.GetImageData()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    nx, ny, nz = image.GetDimensions()
    return scalars.reshape(nz, ny, nx, -1).transpose(2, 1, 0, 3).copy()


def _set_voxels(node, data: np.ndarray) -> None:
    """Set a volume node's voxels from (x, y, z, components)."""
    nx, ny, nz, nc = data.shape
    flat = np.ascontiguousarray(data.transpose(2, 1, 0, 3)).reshape(-1, nc)
    scalars = numpy_support.numpy_to_vtk(flat, deep=True, array_type=numpy_support.get_vtk_array_type(data.dtype))
    image = vtk.vtkImageData()
    image.SetDimensions(nx, ny, nz)
    image.GetPointData().SetScalars(scalars)
    node.SetAndObserveImageData(image)


def _ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def _sequences_logic(scene):
    """Slicer's Sequences module logic in the app; a fresh one bound to the scene headless."""
    if hasattr(slicer, "modules") and hasattr(slicer.modules, "sequences"):
        return slicer.modules.sequences.logic()
    logic = slicer.vtkSlicerSequencesLogic()
    logic.SetMRMLScene(scene)
    return logic
