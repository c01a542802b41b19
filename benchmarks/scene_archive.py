"""A whole Slicer scene as `.mrb` (Slicer's own bundle, `vtkMRMLScene.WriteToMRB`) and as a `.sirz` scene archive
(`save_scene`: the 4D node with the exact codec, and with the codec suggested for it): bytes, save and open time.

The scene: the real sample (mdt's b1k_b2k) rounded to int16 as a DWI node, a T1-like 3D volume (the mean b = 0
image, int16) and a label map derived from it (background / dim / bright by the mean b = 0 intensity, uint8), with a
segmentation made from the label map, a table and a fiducial list. Opening the `.mrb` is what slicer-core can do
headless (unzip, then `SetURL` + `Import`, which ReadFromMRB does after its remote-IO set-up); opening the `.sirz`
is `load_scene`. Each into a fresh scene, best of 3 runs; run with slicer-core installed:

    python benchmarks/scene_archive.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import slicer
import vtk

from SirenCompressLib import load_scene, read_volume, save_scene
from SirenCompressLib import slicer_nodes as sn
from SirenCompressLib.codecs import exact_codec
from SirenCompressLib.sample import copy_sample
from SirenCompressLib.volume import Volume4D


def fresh_scene():
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    logics = [slicer.vtkMRMLColorLogic(), slicer.vtkSlicerMarkupsLogic()]
    for name, logic in zip(("Colors", "Markups"), logics):
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
    logics[0].AddDefaultColorNodes()
    return scene, (app, logics)


def build(scene, folder: Path) -> None:
    volume = read_volume(copy_sample(folder))
    volume = Volume4D(np.rint(volume.data).astype(np.int16), volume.ijk_to_ras, volume.gradients)
    sn.nodes_from_volume(volume, "dwi", scene)
    b0 = volume.data[..., volume.gradients.bvals < 100].mean(axis=-1)
    t1 = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1")
    sn.fill_volume(t1, Volume4D(np.rint(b0).astype(np.int16)[..., None], volume.ijk_to_ras))
    t1.CreateDefaultDisplayNodes()
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "tissues")
    classes = np.digitize(b0, np.quantile(b0, [0.4, 0.8])).astype(np.uint8)
    sn.fill_volume(labels, Volume4D(classes[..., None], volume.ijk_to_ras))
    labels.CreateDefaultDisplayNodes()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segments")
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labels, segmentation)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "measurements")
    slicer.util.updateTableFromArray(table, [np.arange(10.0), np.arange(10) ** 2.0], ["x", "y"])
    seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
    seeds.AddControlPoint(vtk.vtkVector3d(1, 2, 3), "seed")


def open_mrb(path: Path) -> None:
    scene, keep = fresh_scene()
    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(path) as zf:
            zf.extractall(folder)
        scene.SetURL(str(next(Path(folder).rglob("*.mrml"))))
        assert scene.Import()
        assert scene.GetFirstNodeByClass("vtkMRMLDiffusionWeightedVolumeNode").GetImageData() is not None


def open_sirz(path: Path) -> None:
    scene, keep = fresh_scene()
    load_scene(path, scene)
    assert scene.GetFirstNodeByClass("vtkMRMLDiffusionWeightedVolumeNode").GetImageData() is not None


def best(run, times: int = 3) -> float:
    seconds = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        scene, keep = fresh_scene()
        build(scene, folder / "sample")
        rows = []
        start = time.perf_counter()
        assert scene.WriteToMRB(str(folder / "scene.mrb"))
        rows.append(("`.mrb` (WriteToMRB)", folder / "scene.mrb", time.perf_counter() - start, open_mrb))
        for label, codec in (("`.sirz`, lossless", exact_codec()), ("`.sirz`, suggested codec", None)):
            path = folder / f"scene-{codec}.sirz"
            start = time.perf_counter()
            saved = save_scene(path, scene, codec)
            codecs = ", ".join(f"{e['name']}: {e['codec']}" for e in saved.manifest["nodes"])
            rows.append((f"{label} ({codecs})", path, time.perf_counter() - start, open_sirz))
        print("| scene file | bytes | save s | open s |\n|---|---:|---:|---:|")
        for label, path, save_s, opener in rows:
            print(f"| {label} | {path.stat().st_size:,} | {save_s:.2f} | {best(lambda: opener(path)):.2f} |")


if __name__ == "__main__":
    main()
