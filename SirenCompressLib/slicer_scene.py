"""A whole 3D Slicer scene as one `.sirz` (a scene archive, `scene_archive.py`): `save_scene` and `load_scene`.

Saving compresses every 4D node (DWI, sequence of scalar volumes, multivolume) with the chosen codec and every
integer 3D scalar volume and label map with the exact codec, each as an ordinary single-volume archive; Slicer's
own scene writer (`vtkMRMLScene.SaveSceneToSlicerDataBundleDirectory`, what `.mrb` files are made of) writes the
MRML scene and the files of every other node (segmentations, transforms, tables, markups, colour tables, float
3D volumes, …), and the compressed nodes' storage nodes and files are dropped from it. Opening decodes and checks
everything first, then imports the MRML scene and fills the compressed nodes: nothing is half-loaded.

Needs `slicer` (inside Slicer, or slicer-core headless) and no Qt; `SirenCompressLib` exports both functions
and imports this module only when one of them is used.
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import slicer

from .codecs import configure, exact_codec
from .errors import ArchiveError, InputError, SirenCompressError
from .pipeline import compress, decompress
from .scene_archive import NODE_KINDS, SceneArchive, build_scene_archive, read_scene_archive, write_scene_archive
from .slicer_nodes import (
    _ijk_to_ras,
    _sequences_logic,
    _voxels,
    add_report,
    fill_dwi,
    fill_sequence,
    fill_volume,
    input_kind,
    volume_from_node,
)
from .volume import Volume4D

# The MRML element classes a compressed node of each kind may be (a subclass keeps its own element name).
KIND_CLASSES = {"dwi": "vtkMRMLDiffusionWeightedVolumeNode", "sequence": "vtkMRMLSequenceNode",
                "multivolume": "vtkMRMLVolumeNode", "volume": "vtkMRMLScalarVolumeNode",
                "labelmap": "vtkMRMLLabelMapVolumeNode"}


def save_scene(path: str | os.PathLike, scene=None, codec: str | None = None, preset: str | None = None,
               force: bool = False, progress: Callable[[dict], None] | None = None, **settings) -> SceneArchive:
    """Write a Slicer scene as one scene archive (`.sirz`).

    Parameters
    ----------
    path : str or os.PathLike
        The `.sirz` file, written atomically.
    scene : vtkMRMLScene or None
        None: `slicer.mrmlScene`.
    codec : str or None
        The codec of the 4D nodes (a key of `codecs.REGISTRY`); None: the one `codecs.suggest` names for each.
        3D scalar volumes and label maps of integer voxels are always coded with the exact codec.
    preset : str or None
        The codec's preset (None: its default).
    force : bool
        Replace an existing file.
    progress : callable or None
        Receives {"event": "node", "name", "kind", "index", "nodes"} before each compressed node, then that
        node's codec events (`pipeline.compress`). An exception it raises stops the save (e.g. a Cancel
        button): nothing is written, and the exception propagates.
    **settings
        The codec's settings (its `Config` field names, e.g. ``epochs=500``); they need `codec`.

    Returns
    -------
    SceneArchive
        What was written.

    Raises
    ------
    InputError
        For settings without a codec, an unknown codec or setting, or a node the codec cannot code.
    OutputError
        When the file exists (without `force`) or cannot be written.
    SirenCompressError
        When Slicer cannot write the scene.
    """
    scene = scene or slicer.mrmlScene
    if (settings or preset) and codec is None:
        raise InputError("codec settings need the codec they are for (codec=…)")
    config = None if codec is None else configure(codec, settings, preset)
    nodes = compressible_nodes(scene)
    members = []
    for index, (node, kind) in enumerate(nodes):
        if progress is not None:
            progress({"event": "node", "name": node.GetName(), "kind": kind, "index": index, "nodes": len(nodes)})
        if NODE_KINDS[kind] == 3:
            archive = compress(Volume4D(_voxels(node), _ijk_to_ras(node)), exact_codec(), progress=progress)
        else:
            archive = compress(volume_from_node(node), codec, config, progress)
        members.append((node.GetID(), node.GetName(), kind, archive))
    with tempfile.TemporaryDirectory(prefix="sirencompress-scene-") as folder:
        files, mrml = _scene_files(scene, Path(folder) / "scene", {node.GetID() for node, _ in nodes})
    archive = build_scene_archive(members, files, mrml)
    write_scene_archive(archive, path, force)
    return archive


def compressible_nodes(scene) -> list[tuple[object, str]]:
    """The nodes a scene archive compresses, with their kind (`scene_archive.NODE_KINDS`): the 4D nodes
    (`slicer_nodes.input_kind`) and the 3D scalar volumes and label maps of integer voxels, among the nodes saved
    with the scene and shown to the user; not a sequence browser's proxy nodes (the sequence gives them back).

    Parameters
    ----------
    scene : vtkMRMLScene

    Returns
    -------
    list of (vtkMRMLNode, str)
    """
    browsers = _nodes(scene, "vtkMRMLSequenceBrowserNode")
    found = []
    for node in _nodes(scene, "vtkMRMLStorableNode"):
        if node.GetHideFromEditors() or not node.GetSaveWithScene() or \
                any(browser.IsProxyNodeID(node.GetID()) for browser in browsers):
            continue
        kind = _kind(node)
        if kind is not None:
            found.append((node, kind))
    return found


def _kind(node) -> str | None:
    try:
        return input_kind(node)
    except InputError:
        pass
    image = node.GetImageData() if node.IsA("vtkMRMLScalarVolumeNode") else None
    if image is None or node.IsA("vtkMRMLTensorVolumeNode") or image.GetNumberOfScalarComponents() != 1 or \
            image.GetScalarTypeAsString() not in ("char", "signed char", "unsigned char", "short", "unsigned short",
                                                  "int", "unsigned int"):
        return None  # Slicer's own writer keeps it (float voxels, vectors, tensors)
    return "labelmap" if node.IsA("vtkMRMLLabelMapVolumeNode") else "volume"


def _scene_files(scene, folder: Path, compressed: set[str]) -> tuple[dict[str, bytes], str]:
    """Slicer's scene bundle of `scene` written into `folder`, less the compressed nodes' storage nodes and
    files: the files by relative path, and the MRML file's path among them."""
    folder.mkdir()
    url, root = scene.GetURL(), scene.GetRootDirectory()
    try:
        if not scene.SaveSceneToSlicerDataBundleDirectory(str(folder)):
            raise SirenCompressError("Slicer could not write the scene (see its log)")
    finally:
        scene.SetURL(url)
        scene.SetRootDirectory(root)
    mrml = next(folder.glob("*.mrml"))
    tree = ET.parse(mrml)
    dropped = set()
    for element in list(tree.getroot()):
        if element.get("id") in compressed:
            roles = _references(element.get("references", ""))
            dropped.update(roles.pop("storage", []))
            element.set("references", "".join(f"{role}:{' '.join(ids)};" for role, ids in roles.items()))
    for element in list(tree.getroot()):
        if element.get("id") in dropped:
            for key, value in element.attrib.items():
                if key == "fileName" or key.startswith("fileListMember"):
                    for file in (folder / value, *_detached_data(folder / value)):
                        file.unlink(missing_ok=True)
            tree.getroot().remove(element)
    mrml.unlink()
    tree.write(folder / "scene.mrml", encoding="UTF-8", xml_declaration=True)
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return files, "scene.mrml"


def _references(text: str) -> dict[str, list[str]]:
    """An MRML "references" attribute ("role:id id;role:id;") as role → ids."""
    roles = {}
    for part in filter(None, text.split(";")):
        role, _, ids = part.partition(":")
        roles[role] = ids.split()
    return roles


def _detached_data(header: Path) -> list[Path]:
    """The data file a detached NRRD header (.nhdr) names ("data file: NAME"), if any."""
    if header.suffix != ".nhdr" or not header.is_file():
        return []
    for line in header.read_bytes().split(b"\n\n")[0].decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("data file", "datafile"):
            return [header.parent / value.strip()]
    return []


def load_scene(path: str | os.PathLike, scene=None) -> list:
    """Add the scene of a scene archive to a Slicer scene: the MRML scene and its nodes' files as Slicer's scene
    reader reads them, the compressed nodes decoded (numpy only) into their nodes, and a report table and chart
    per 4D node (`slicer_nodes.add_report`).

    Everything is read, decoded and checked before the scene changes; if adding fails, what was added is removed.

    Parameters
    ----------
    path : str or os.PathLike
    scene : vtkMRMLScene or None
        None: `slicer.mrmlScene`.

    Returns
    -------
    list of vtkMRMLNode
        The nodes added, in the scene's order.

    Raises
    ------
    ArchiveError
        For a missing, corrupt or modified archive, a node that does not decode or does not match the MRML scene.
    """
    scene = scene or slicer.mrmlScene
    archive = read_scene_archive(path)
    with tempfile.TemporaryDirectory(prefix="sirencompress-scene-") as folder:
        for name, data in archive.scene_files().items():
            (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_bytes(data)
        mrml = Path(folder) / archive.mrml
        _check_mrml(mrml, archive, path)
        volumes = {}
        for entry in archive.manifest["nodes"]:
            try:
                volumes[entry["id"]] = decompress(archive.archives[entry["id"]])
            except ArchiveError as exc:
                raise ArchiveError(f"{path}: node {entry['name']!r}: {exc}") from None
        return _import(scene, mrml, archive, volumes)


def _check_mrml(mrml: Path, archive: SceneArchive, path) -> None:
    """Every compressed node is an element of the MRML file, without a storage node."""
    try:
        elements = {e.get("id"): e for e in ET.parse(mrml).getroot()}
    except ET.ParseError as exc:
        raise ArchiveError(f"{path}: the MRML scene is not valid XML ({exc})") from None
    for entry in archive.manifest["nodes"]:
        element = elements.get(entry["id"])
        if element is None or "storage" in _references(element.get("references", "")):
            raise ArchiveError(f"{path}: node {entry['name']!r} ({entry['id']}) is not a compressed node of the "
                               "MRML scene")


def _import(scene, mrml: Path, archive: SceneArchive, volumes: dict) -> list:
    before = {node.GetID() for node in _nodes(scene, "vtkMRMLNode")}
    url, root = scene.GetURL(), scene.GetRootDirectory()
    try:
        scene.SetURL(str(mrml))
        if not scene.Import():
            raise ArchiveError(f"Slicer could not read the scene of {mrml.name}")
        for entry in archive.manifest["nodes"]:
            node = scene.GetNodeByID(scene.GetChangedID(entry["id"]) or entry["id"])
            if node is None or node.GetID() in before or not node.IsA(KIND_CLASSES[entry["kind"]]):
                raise ArchiveError(f"node {entry['name']!r} ({entry['id']}) is not a {entry['kind']} of the scene")
            _fill(node, entry["kind"], volumes[entry["id"]])
            if NODE_KINDS[entry["kind"]] == 4:
                add_report(archive.archives[entry["id"]], node.GetName(), scene)
    except BaseException:
        for node in _nodes(scene, "vtkMRMLNode"):
            if node.GetID() not in before:
                scene.RemoveNode(node)
        raise
    finally:
        scene.SetURL(url)
        scene.SetRootDirectory(root)
    return [node for node in _nodes(scene, "vtkMRMLNode") if node.GetID() not in before]


def _fill(node, kind: str, volume: Volume4D) -> None:
    if kind == "dwi":
        fill_dwi(node, volume)
    elif kind == "sequence":
        fill_sequence(node, volume)
        for browser in _nodes(node.GetScene(), "vtkMRMLSequenceBrowserNode"):
            if browser.IsSynchronizedSequenceNodeID(node.GetID()):
                _sequences_logic(node.GetScene()).UpdateProxyNodesFromSequences(browser)
    else:
        fill_volume(node, volume)


def _nodes(scene, cls: str) -> list:
    collection = scene.GetNodesByClass(cls)
    nodes = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
    collection.UnRegister(None)
    return nodes

