"""The .sirz container: round trip, and every kind of damage gives one clear ArchiveError."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from conftest import FAST, phantom
from SirenCompressLib import ArchiveError, compress, decompress, read_archive, write_archive
from SirenCompressLib.archive import FORMAT_VERSION, digest, to_bytes


@pytest.fixture(scope="module")
def archive_bytes() -> bytes:
    return to_bytes(compress(phantom(), config=FAST))


def _rewrite(data: bytes, edit, sign: bool = True) -> bytes:
    """The archive with its manifest and members passed through `edit(manifest, members)`, and (if `sign`)
    a digest that matches the edit."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        members = {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}
    edit(manifest, members)
    if sign:
        manifest.pop("digest")
        manifest["digest"] = digest(manifest, members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, member in members.items():
            zf.writestr(name, member)
    return out.getvalue()


def test_round_trip(tmp_path, archive_bytes):
    (tmp_path / "a.sirz").write_bytes(archive_bytes)
    archive = read_archive(tmp_path / "a.sirz")
    assert archive.manifest["format_version"] == 2
    assert sorted(archive.members) == ["slices/0000.bin", "slices/0001.bin", "slices/0002.bin"]
    assert to_bytes(archive) == archive_bytes  # reproducible bytes


def test_write_refuses_to_overwrite(tmp_path, archive_bytes):
    (tmp_path / "a.sirz").write_bytes(b"keep me")
    archive = read_archive_from(tmp_path, archive_bytes)
    with pytest.raises(Exception, match="exists already"):
        write_archive(archive, tmp_path / "a.sirz")
    assert (tmp_path / "a.sirz").read_bytes() == b"keep me"


def read_archive_from(tmp_path, data: bytes):
    (tmp_path / "src.sirz").write_bytes(data)
    return read_archive(tmp_path / "src.sirz")


def _edit_slice_member(m, members):
    members["slices/0001.bin"] = members["slices/0001.bin"][:-40]
    m["slices"][1]["bytes"] -= 40


def _bump_version(m, members):
    m["format_version"] = FORMAT_VERSION + 1


def _drop_member(m, members):
    del members["slices/0002.bin"]


def _bad_shape(m, members):
    m["shape"] = [16, 14, -3, 15]


def _extra_member(m, members):
    members["../../etc/evil"] = b"x"


def _bad_norm(m, members):
    m["slices"][0]["min"] = m["slices"][0]["min"][:-1]


def _bad_config(m, members):
    m["codec"]["config"]["layers"] = "three"


def _unknown_codec(m, members):
    m["codec"]["name"] = "pickle"


def _nan_matrix(m, members):
    m["ijk_to_ras"][0][0] = float("nan")


@pytest.mark.parametrize("edit, message", [
    (_edit_slice_member, "network weights"),
    (_bump_version, "newer than this SirenCompress reads"),
    (_drop_member, "missing"),
    (_bad_shape, "bad shape"),
    (_extra_member, "unexpected member"),
    (_bad_norm, "normalisation must list 15 values"),
    (_bad_config, "bad siren settings"),
    (_unknown_codec, "unknown codec"),
    (_nan_matrix, "not valid JSON|ijk_to_ras"),
])
def test_damaged_manifest_or_member(tmp_path, archive_bytes, edit, message):
    path = tmp_path / "bad.sirz"
    path.write_bytes(_rewrite(archive_bytes, edit, sign=edit is not _nan_matrix))  # NaN: no JSON to sign
    with pytest.raises(ArchiveError, match=message):
        decompress(read_archive(path))


@pytest.mark.parametrize("edit", [_edit_slice_member, lambda m, members: m["source"].update(name="other.nii")])
def test_an_edit_without_a_new_digest_is_refused(tmp_path, archive_bytes, edit):
    path = tmp_path / "bad.sirz"
    path.write_bytes(_rewrite(archive_bytes, edit, sign=False))
    with pytest.raises(ArchiveError, match="do not match|digest does not match"):
        read_archive(path)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated(tmp_path, archive_bytes, cut):
    path = tmp_path / "t.sirz"
    path.write_bytes(archive_bytes[: int(len(archive_bytes) * cut)])
    with pytest.raises(ArchiveError, match="not a valid .sirz archive|missing"):
        decompress(read_archive(path))


def test_flipped_byte_fails_the_crc(tmp_path, archive_bytes):
    data = bytearray(archive_bytes)
    data[200] ^= 0xFF  # inside the first member's data
    path = tmp_path / "f.sirz"
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError):
        decompress(read_archive(path))


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"PK\x03\x04" + b"\0" * 100])
def test_garbage(tmp_path, content):
    path = tmp_path / "g.sirz"
    path.write_bytes(content)
    with pytest.raises(ArchiveError, match="not a valid .sirz archive"):
        read_archive(path)


def test_zip_without_manifest(tmp_path):
    path = tmp_path / "z.sirz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ArchiveError, match="no manifest.json"):
        read_archive(path)
