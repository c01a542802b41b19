"""Scene archives: one `.sirz` holding a whole 3D Slicer scene (docs/FORMAT.md, "Scene archives").

The container is that of every `.sirz` (a zip whose `manifest.json` carries a digest of the whole); the
manifest's "kind" is "scene" and its format version 3. Each compressed node is a member `nodes/NNNN.sirz` that
is an ordinary single-volume archive (the 4D nodes with the chosen codec, 3D volumes and label maps with the
exact codec); the MRML scene and the files of every other node, as Slicer's own scene writer made them, are
members under `scene/`. Reading and decoding need numpy only; putting the nodes into a scene needs Slicer
(`slicer_scene.load_scene`).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .archive import (
    FORMAT_NAME,
    MANIFEST,
    SCENE_KIND,
    SHA256,
    ZIP_ERRORS,
    Archive,
    archive_from_bytes,
    container_bytes,
    digest,
    not_an_archive,
    read_manifest,
    to_bytes,
)
from .atomic import atomic_outputs
from .codecs import REGISTRY, get_codec
from .errors import ArchiveError, InputError
from .version import __version__

SCENE_FORMAT_VERSION = 3  # single-volume archives stay at archive.FORMAT_VERSION
NODE_KINDS = {"dwi": 4, "sequence": 4, "multivolume": 4, "volume": 3, "labelmap": 3}  # kind → dimensions
SCENE_PREFIX = "scene/"
# The MRML element of the storage node Slicer reads each kind's decoded file with (`mrml_with_files`).
STORAGE_ELEMENTS = {"dwi": "NRRDStorage", "sequence": "VolumeSequenceStorage", "volume": "VolumeArchetypeStorage",
                    "labelmap": "VolumeArchetypeStorage"}
MAX_NAME = 1024  # characters of a node name, id or member path
# Deflated scene files may declare at most SCENE_FLOOR + SCENE_BYTES_PER_BYTE · (file size) bytes in all (deflate
# expands at most about 1032×).
SCENE_FLOOR = 1 << 20
SCENE_BYTES_PER_BYTE = 1100
KEYS = {"format", "format_version", "kind", "library_version", "nodes", "scene"}
NODE_KEYS = {"id", "name", "kind", "member", "codec", "bytes"}


@dataclass
class SceneArchive:
    """A scene archive in memory, checked (`read_scene_archive`).

    Attributes
    ----------
    manifest : dict
        "nodes": one entry per compressed node (id, name, kind, member, codec, bytes); "scene": the member that
        is the MRML file.
    members : dict of str to bytes
        Every member but the manifest: `nodes/NNNN.sirz` and the scene's files under `scene/`.
    archives : dict of str to Archive
        Each node's single-volume archive, read and checked (not decoded), by node id.
    """

    manifest: dict
    members: dict[str, bytes]
    archives: dict[str, Archive] = field(default_factory=dict)

    def node_entry(self, name: str) -> dict:
        """The manifest entry of the node named `name` (or with that id): its id, name, kind, member, codec, bytes.

        Parameters
        ----------
        name : str

        Returns
        -------
        dict

        Raises
        ------
        InputError
            When no node has that name or id (the message lists the names).
        """
        for entry in self.manifest["nodes"]:
            if name in (entry["name"], entry["id"]):
                return entry
        names = ", ".join(repr(entry["name"]) for entry in self.manifest["nodes"]) or "none"
        raise InputError(f"the scene archive has no node {name!r} (its compressed nodes: {names})")

    def node_archive(self, name: str) -> Archive:
        """The single-volume archive of the node named `name` (or with that id), e.g. to `pipeline.decompress` it.

        Parameters
        ----------
        name : str

        Returns
        -------
        Archive

        Raises
        ------
        InputError
            When no node has that name or id.
        """
        return self.archives[self.node_entry(name)["id"]]

    def scene_files(self) -> dict[str, bytes]:
        """The MRML file and the other nodes' files, by their path relative to the MRML file's folder.

        Returns
        -------
        dict of str to bytes
        """
        return {name[len(SCENE_PREFIX):]: data for name, data in self.members.items() if name.startswith(SCENE_PREFIX)}

    @property
    def mrml(self) -> str:
        """The MRML file's path among `scene_files`."""
        return self.manifest["scene"][len(SCENE_PREFIX):]


def node_member_name(index: int) -> str:
    """The member name of the `index`-th node's archive: "nodes/NNNN.sirz".

    Parameters
    ----------
    index : int

    Returns
    -------
    str
    """
    return f"nodes/{index:04d}.sirz"


def build_scene_archive(nodes: list[tuple[str, str, str, Archive]], files: dict[str, bytes], mrml: str
                        ) -> SceneArchive:
    """A scene archive from its parts.

    Parameters
    ----------
    nodes : list of (id, name, kind, Archive)
        The compressed nodes: MRML id, name, one of `NODE_KINDS`, and the node's single-volume archive.
    files : dict of str to bytes
        The MRML file and the files of the other nodes, by path relative to the MRML file's folder.
    mrml : str
        The MRML file's path among `files`.

    Returns
    -------
    SceneArchive
    """
    manifest = {"format": FORMAT_NAME, "format_version": SCENE_FORMAT_VERSION, "kind": SCENE_KIND,
                "library_version": __version__, "nodes": [], "scene": SCENE_PREFIX + mrml}
    members, archives = {}, {}
    for index, (node_id, name, kind, archive) in enumerate(nodes):
        data = to_bytes(archive)
        member = node_member_name(index)
        members[member] = data
        archives[node_id] = archive
        manifest["nodes"].append({"id": node_id, "name": name, "kind": kind, "member": member,
                                  "codec": archive.manifest["codec"]["name"], "bytes": len(data)})
    members.update({SCENE_PREFIX + path: data for path, data in sorted(files.items())})
    return SceneArchive(manifest, members, archives)


def write_scene_archive(archive: SceneArchive, path: str | os.PathLike, force: bool = False) -> int:
    """Write a scene archive atomically: node archives stored, scene files deflated.

    Parameters
    ----------
    archive : SceneArchive
    path : str or os.PathLike
    force : bool
        Replace an existing file.

    Returns
    -------
    int
        The file size in bytes.

    Raises
    ------
    OutputError
        When the file exists (without `force`) or cannot be written.
    """
    data = container_bytes(archive.manifest, archive.members, lambda name: name.startswith(SCENE_PREFIX))
    with atomic_outputs([path], force) as (temp,):
        temp.write_bytes(data)
    return len(data)


def read_scene_archive(path: str | os.PathLike) -> SceneArchive:
    """Read and check a scene archive: the container, the manifest, the digest, and every node's archive (each
    checked as `read_archive` checks a file, within its own decode budget); nothing is decoded.

    Nothing larger than the file's own size (its scene files: `SCENE_BYTES_PER_BYTE` times) is read or allocated
    before the manifest and the members' declared sizes are checked.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    SceneArchive

    Raises
    ------
    ArchiveError
        For a missing, corrupt, truncated or modified file, or one that is not a scene archive.
    """
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such file")
    try:
        return _read(path)
    except ArchiveError as exc:
        raise ArchiveError(f"{path}: {exc}") from None
    except ZIP_ERRORS as exc:
        raise ArchiveError(f"{path}: {not_an_archive(exc)}") from None


def _read(path: Path) -> SceneArchive:
    size = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        manifest = read_manifest(zf)
        if manifest.get("kind") != SCENE_KIND:
            raise ArchiveError("not a scene archive (a single-volume .sirz: read it with read_archive)")
        stored = manifest.pop("digest", None)
        if not (isinstance(stored, str) and SHA256.fullmatch(stored)):
            raise ArchiveError("the manifest has no SHA-256 digest")
        infos = _member_infos(zf, size)
        check_scene_manifest(manifest, {name: info.file_size for name, info in infos.items()})
        members = {name: zf.read(name) for name in infos}
    if stored != digest(manifest, members):
        raise ArchiveError("the archive's digest does not match its contents: it was modified or damaged")
    archives = {}
    for entry in manifest["nodes"]:
        try:
            archive = archive_from_bytes(members[entry["member"]])
        except ArchiveError as exc:
            raise ArchiveError(f"node {entry['name']!r}: {exc}") from None
        _check_node(entry, archive)
        archives[entry["id"]] = archive
    return SceneArchive(manifest, members, archives)


def _member_infos(zf: zipfile.ZipFile, size: int) -> dict[str, zipfile.ZipInfo]:
    """Every member's entry but the manifest's, after checking names and declared sizes: node archives stored as
    they are and together no larger than the file; scene files stored or deflated, within the scene budget."""
    infos, scene_bytes = {}, 0
    for info in zf.infolist():
        name = info.filename
        if name == MANIFEST:
            continue
        if name.startswith(SCENE_PREFIX):
            _check_scene_path(name[len(SCENE_PREFIX):])
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ArchiveError(f"member {name} is neither stored nor deflated")
            scene_bytes += info.file_size
        elif info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise ArchiveError(f"member {name} is not stored as it is")
        infos[name] = info
    if sum(info.file_size for name, info in infos.items() if not name.startswith(SCENE_PREFIX)) > size:
        raise ArchiveError("the members' declared sizes add up to more than the file")
    if scene_bytes > SCENE_FLOOR + SCENE_BYTES_PER_BYTE * size:
        raise ArchiveError(f"the scene files declare {scene_bytes:,} bytes, more than an archive of {size:,} bytes "
                           "holds (see the decode budget in docs/FORMAT.md)")
    return infos


def _check_scene_path(path: str) -> None:
    """A relative path of non-empty components without "." or "..", backslashes or control characters."""
    parts = PurePosixPath(path).parts
    if not (0 < len(path) <= MAX_NAME and path.isprintable() and "\\" not in path and not path.startswith("/")
            and parts and all(part not in (".", "..") for part in parts) and "//" not in path
            and not path.endswith("/")):
        raise ArchiveError(f"bad scene file name {SCENE_PREFIX + path!r}")


def check_scene_manifest(m: dict, members: dict[str, int]) -> None:
    """Check a scene archive's manifest (without its digest) against its members' sizes.

    Parameters
    ----------
    m : dict
    members : dict of str to int
        Member name → size in bytes.

    Raises
    ------
    ArchiveError
        Unless the keys are those of a scene archive, every node entry is complete, names its own member with
        that member's size and a known codec, the ids are unique, the MRML file is a member, and every `nodes/`
        member belongs to a node.
    """
    if set(m) != KEYS:
        raise ArchiveError(f"a scene manifest has the keys {', '.join(sorted(KEYS))}")
    if m["format"] != FORMAT_NAME:
        raise ArchiveError("not a .sirz manifest (format name missing)")
    if m["format_version"] != SCENE_FORMAT_VERSION:
        raise ArchiveError(f"scene archive format version {m['format_version']!r} is not {SCENE_FORMAT_VERSION}, "
                           "the one this SirenCompress reads")
    if not (isinstance(m["library_version"], str) and 0 < len(m["library_version"]) <= 64):
        raise ArchiveError("bad library_version (expected a short version string)")
    if not isinstance(m["nodes"], list):
        raise ArchiveError("nodes must be a list")
    ids = set()
    for index, entry in enumerate(m["nodes"]):
        if not (isinstance(entry, dict) and set(entry) == NODE_KEYS
                and all(isinstance(entry[k], str) and 0 < len(entry[k]) <= MAX_NAME for k in ("id", "name"))
                and entry["kind"] in NODE_KINDS and entry["codec"] in REGISTRY
                and entry["member"] == node_member_name(index) and isinstance(entry["bytes"], int)
                and not isinstance(entry["bytes"], bool)):
            raise ArchiveError(f"node entry {index} is malformed (id, name, kind, member, codec, bytes)")
        if entry["id"] in ids:
            raise ArchiveError(f"node id {entry['id']!r} occurs twice")
        ids.add(entry["id"])
        if members.get(entry["member"]) != entry["bytes"]:
            raise ArchiveError(f"node {entry['name']!r}: member {entry['member']} is missing or not "
                               f"{entry['bytes']} bytes")
    named = {entry["member"] for entry in m["nodes"]}
    extra = sorted(name for name in members if not name.startswith(SCENE_PREFIX) and name not in named)
    if extra:
        raise ArchiveError(f"unexpected member {extra[0]!r}")
    if not (isinstance(m["scene"], str) and m["scene"].endswith(".mrml") and m["scene"] in members):
        raise ArchiveError("the manifest's scene must name the MRML file among the members")


def _check_node(entry: dict, archive: Archive) -> None:
    """A node's archive agrees with its entry: the codec; 3D kinds one volume coded exactly; a DWI with gradients."""
    m = archive.manifest
    if m["codec"]["name"] != entry["codec"]:
        raise ArchiveError(f"node {entry['name']!r}: its archive's codec is {m['codec']['name']}, "
                           f"not {entry['codec']}")
    if NODE_KINDS[entry["kind"]] == 3 and not (m["shape"][3] == 1 and get_codec(entry["codec"]).EXACT):
        raise ArchiveError(f"node {entry['name']!r}: a {entry['kind']} is one volume coded exactly")
    if entry["kind"] == "dwi" and m["gradients"] is None:
        raise ArchiveError(f"node {entry['name']!r}: a DWI archive has gradients")


def raw16_bytes(archive: SceneArchive) -> int:
    """The node volumes as raw 16-bit values: the bytes that compression ratios are measured against.

    Parameters
    ----------
    archive : SceneArchive

    Returns
    -------
    int
    """
    return sum(2 * math.prod(a.manifest["shape"]) for a in archive.archives.values())


def mrml_with_files(archive: SceneArchive, files: dict[str, str]) -> bytes:
    """The scene's MRML file with a storage node for each compressed node that reads its decoded file, as
    Slicer's own storage node for that kind (`STORAGE_ELEMENTS`) would: the scene of `decompress -o FOLDER`
    then opens in Slicer without this package.

    Parameters
    ----------
    archive : SceneArchive
    files : dict of str to str
        Node id → the decoded file's path relative to the MRML file (".nrrd" for DWIs, ".seq.nrrd" for
        sequences, NIfTI or NRRD for 3D volumes). Nodes not given (and multivolumes, which Slicer reads through
        the MultiVolumeExplorer extension) keep no storage node.

    Returns
    -------
    bytes
        The MRML file, UTF-8.

    Raises
    ------
    ArchiveError
        When the MRML file is not valid XML.
    """
    try:
        root = ET.fromstring(archive.members[archive.manifest["scene"]])
    except ET.ParseError as exc:
        raise ArchiveError(f"the MRML scene is not valid XML ({exc})") from None
    kinds = {entry["id"]: entry["kind"] for entry in archive.manifest["nodes"]}
    for n, element in enumerate(e for e in list(root) if e.get("id") in files and kinds[e.get("id")] in
                                STORAGE_ELEMENTS):
        tag = STORAGE_ELEMENTS[kinds[element.get("id")]]
        storage = f"vtkMRML{tag}NodeSirenCompress{n + 1}"
        ET.SubElement(root, tag, {"id": storage, "name": storage, "hideFromEditors": "true",
                                  "fileName": files[element.get("id")], "useCompression": "1"})
        element.set("references", element.get("references", "") + f"storage:{storage};")
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)
