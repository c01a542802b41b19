"""Slicer's file reader and writer for .sirz archives: a single 4D node (`slicer_nodes`) or a whole scene
(`slicer_scene`). Thin: they call the library and report errors the way Slicer's file dialogs expect."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import slicer
import vtk

from .archive import SCENE_KIND, manifest_kind
from .errors import InputError, SirenCompressError
from .slicer_nodes import (
    FILE_TYPE,
    NAME_FILTER,
    NodeCompression,
    input_kind,
    load_archive,
    rate_flags_from_scene,
    reference_archive,
    settings_from_scene,
    show_loaded,
)
from .slicer_scene import load_scene, save_scene


class _ArchiveFileIO:
    """What Slicer asks of both scripted file readers and writers; `parent` is Slicer's C++ peer."""

    def __init__(self, parent) -> None:
        self.parent = parent

    def description(self) -> str:
        return "SirenCompress archive"

    def fileType(self) -> str:
        return FILE_TYPE

    def _error(self, message: str) -> None:
        """Show an error the way Slicer's file dialogs expect."""
        self.parent.userMessages().AddMessage(vtk.vtkCommand.ErrorEvent, message)


class SirenCompressFileReader(_ArchiveFileIO):
    """Opens .sirz files (drag-and-drop, Add Data, `slicer.util.loadNodeFromFile(path, "SirenCompressArchive")`)."""

    def extensions(self) -> list[str]:
        return [NAME_FILTER]

    def canLoadFile(self, filePath: str) -> bool:
        return bool(str(filePath).lower().endswith(".sirz"))

    def canLoadFileConfidence(self, filePath: str) -> float:
        return 0.9 if self.canLoadFile(filePath) else 0.0

    def load(self, properties: dict) -> bool:
        """Open a single-volume archive (`load_archive`) or a scene archive (`slicer_scene.load_scene`)."""
        try:
            if manifest_kind(properties["fileName"]) == SCENE_KIND:
                self.parent.loadedNodes = [node.GetID() for node in load_scene(properties["fileName"])]
                return True
            loaded = load_archive(properties["fileName"], properties.get("name"))
        except SirenCompressError as exc:
            self._error(f"Cannot open {properties['fileName']}: {exc}")
            return False
        self.parent.loadedNodes = [node.GetID() for node in loaded.all_nodes]
        app = getattr(slicer, "app", None)
        if properties.get("show", True) and app is not None:
            show_loaded(loaded, app.applicationLogic())
        return True


class SirenCompressFileWriter(_ArchiveFileIO):
    """Saves a DWI, sequence or multivolume node as .sirz, compressing with the module panel's settings
    in a child process; the node's storage node then references the archive. Saves the scene as a scene archive
    (`slicer_scene.save_scene`, each 4D node with its suggested codec, in this process). The Slicer module's
    subclass installs what is missing first and shows progress with Cancel while it waits."""

    def extensions(self, obj) -> list[str]:
        return [NAME_FILTER]

    def canWriteObject(self, obj) -> bool:
        """Whether `obj` (any object Slicer asks about: the scene, any node) can be compressed; never raises."""
        if isinstance(obj, slicer.vtkMRMLScene):
            return True
        try:
            input_kind(obj)
        except InputError:
            return False
        return True

    def write(self, properties: dict) -> bool:
        node = slicer.mrmlScene.GetNodeByID(properties.get("nodeID") or "")
        if node is None:
            return self.write_scene(properties["fileName"])
        try:
            self.prepare()
            codec, config = settings_from_scene()
            task = NodeCompression(node, properties["fileName"], config, python=self.python(), codec=codec,
                                   flags=rate_flags_from_scene())
            self.wait(task.start())
            task.complete()
            reference_archive(node, properties["fileName"])
        except SirenCompressError as exc:
            self._error(f"Cannot save {properties['fileName']}: {exc}")
            return False
        self.parent.writtenNodes = [node.GetID()]
        return True

    def write_scene(self, path: str) -> bool:
        """The whole scene as a scene archive at `path` (replacing a file there: the Save dialog asked)."""
        try:
            self.prepare()
            with self.scene_progress() as progress:
                save_scene(path, force=True, progress=progress)
        except SirenCompressError as exc:
            self._error(f"Cannot save {path}: {exc}")
            return False
        self.parent.writtenNodes = []
        return True

    def prepare(self) -> None:
        """Before compressing: `SirenCompressError` if it cannot run (the module installs what is missing)."""

    @contextmanager
    def scene_progress(self) -> Iterator[Callable[[dict], None] | None]:
        """While a scene is saved: the receiver of `save_scene`'s progress events, which raises
        `SirenCompressError` to cancel (the module shows them with Cancel; here: none)."""
        yield None

    def python(self) -> str | None:
        """The Python for the child process (None: this one)."""
        return None

    def wait(self, task: NodeCompression) -> None:
        """Until the child ends (the module shows progress and Cancel meanwhile)."""
        task.wait()
