"""Archive fuzzing, shared by Testing/test_archive_fuzz.py and benchmarks/fuzz_archives.py: tiny real
archives of every codec, a seeded mutator, and memory-limited worker processes that decode the mutants.

A case passes when its mutant either raises `ArchiveError`, or decodes to the original's voxels, or (only
when the mutant carries no stale integrity check: a re-signed or format-1 archive) decodes to a volume of the
declared shape, dtype and value range. Anything else — another exception, a dead worker, a timeout — fails.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import resource
import struct
import time
import tracemalloc
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np

from SirenCompressLib import ArchiveError, SirenConfig, Volume4D, compress, decompress, read_archive
from SirenCompressLib.archive import digest, to_bytes

MEMORY_LIMIT = 3 << 30  # address space of a worker
HUGE = [2**31, 2**32 + 1, 2**63, 2**64 + 7, 10**30, -(2**31), -1, 0, 1e300, -1e300, 1e-320, 0.5, 3.5]
ODD = [None, True, False, "x", "", [], {}, [1, 2], {"a": 1}, "slices/0000.bin", "float64", "nrrd"]


@dataclass
class Case:
    name: str  # base archive
    data: bytes  # the mutant
    strict: bool  # an unchanged integrity check is left: decoding must give the original or fail
    mutation: str


def base_archives() -> dict[str, bytes]:
    """Tiny real archives, each codec and coder (format 2), and format-1 copies of some (no digests)."""
    from SirenCompressLib.codecs import fmri, lossless, siren3d, transform
    from SirenCompressLib.fmri_phantom import fmri_phantom
    from SirenCompressLib.phantom import dwi_phantom

    dwi = dwi_phantom(shape=(6, 5, 3), directions=3, bvalues=(1000.0,), noise=0.02, seed=1)
    dwi.data[:, :, 2] = 0  # a constant slice
    small = SirenConfig(layers=1, units=8, epochs=3, device="cpu")
    floats = Volume4D(dwi.data.astype(np.float32) / 3, dwi.ijk_to_ras, dwi.gradients)
    run = fmri_phantom(shape=(6, 6, 2), frames=8).volume
    out = {
        "siren": compress(dwi, "siren", small),
        "siren-rans": compress(dwi, "siren", SirenConfig(layers=1, units=8, epochs=3, device="cpu", weight_bits=4,
                                                         coder="rans", basis=2)),
        "siren3d": compress(dwi, "siren3d", siren3d.Config(**small.to_json())),
        "lossless": compress(dwi, "lossless"),
        "lossless-float": compress(floats, "lossless", lossless.Config(quantize=0.5)),
        "lossless-near": compress(dwi, "lossless", lossless.Config(max_error=2)),
        "transform": compress(dwi, "transform", transform.Config(step=10.0)),
        "fmri": compress(run, "fmri", fmri.Config(components=2, layers=1, units=8, epochs=3, qat_epochs=1,
                                                  fusion_channels=2, fusion_kernel=3, device="cpu")),
    }
    archives = {name: to_bytes(a) for name, a in out.items()}
    for name in ("siren", "lossless", "fmri"):
        archives[name + "-v1"] = _format1(archives[name])
    return archives


def _format1(data: bytes) -> bytes:
    """The archive as 0.3 wrote it: format 1, no digests."""
    manifest, members = _unzip(data)
    manifest.update(format_version=1)
    manifest.pop("digest")
    for entry in manifest["slices"]:
        entry.pop("voxels_sha256", None)
    return _zip(manifest, members)


def edited(data: bytes, edit) -> bytes:
    """`data` with `edit(manifest, members)` applied, and a digest that matches the edit if it had one."""
    manifest, members = _unzip(data)
    stored = manifest.pop("digest", None)
    edit(manifest, members)
    if stored is not None:
        manifest["digest"] = digest(manifest, members)
    return _zip(manifest, members)


def _unzip(data: bytes) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return json.loads(zf.read("manifest.json")), {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}


def _zip(manifest: dict, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest), compress_type=zipfile.ZIP_DEFLATED)
        for name, member in members.items():
            zf.writestr(name, member, compress_type=method)
    return buffer.getvalue()


# --- the mutator ---------------------------------------------------------------------------------------


def mutate(name: str, data: bytes, rng: random.Random) -> Case:
    """One seeded mutant of a base archive."""
    kind = rng.choice(["member bytes", "member bytes", "manifest", "manifest", "manifest", "config", "members",
                       "zip"])
    if kind == "zip":
        return Case(name, *_zip_level(data, rng))
    manifest, members = _unzip(data)
    stored = manifest.pop("digest", None)
    if kind == "member bytes":
        what = _member_bytes(members, rng)
    elif kind == "members":
        what = _members(manifest, members, rng)
    else:
        what = _edit(manifest["codec"]["config"] if kind == "config" else manifest, rng)
    resign = stored is not None and rng.random() < 0.75
    if stored is not None:
        manifest["digest"] = digest(manifest, members) if resign else stored
    return Case(name, _zip(manifest, members), stored is not None and not resign, f"{kind}: {what}")


def _member_bytes(members: dict[str, bytes], rng: random.Random) -> str:
    if not members:
        return "no members"
    name = rng.choice(sorted(members))
    data = bytearray(members[name])
    how = rng.choice(["flip", "flip", "truncate", "extend", "header"])
    if how == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        del data[rng.randrange(len(data)):]
    elif how == "extend":
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    else:  # a length field near the start: uint32 set to a huge or small value
        at = 4 * rng.randrange(max(1, min(6, len(data) // 4)))
        data[at:at + 4] = struct.pack("<I", rng.choice([0, 1, 2**31, 2**32 - 1, rng.randrange(2**16)]))
    members[name] = bytes(data)
    return f"{how} {name}"


def _members(manifest: dict, members: dict[str, bytes], rng: random.Random) -> str:
    names = sorted(members)
    how = rng.choice(["swap", "duplicate", "drop", "rename", "extra"])
    if how == "swap" and len(names) > 1:
        a, b = rng.sample(names, 2)
        members[a], members[b] = members[b], members[a]
    elif how == "duplicate" and names:  # another slice names the member too
        z = rng.randrange(len(manifest["slices"]))
        manifest["slices"][z]["member"] = rng.choice(names)
    elif how == "drop" and names:
        del members[rng.choice(names)]
    elif how == "rename" and names:
        name = rng.choice(names)
        members[f"slices/{rng.randrange(10000):04d}.bin"] = members.pop(name)
    else:
        members[f"slices/{rng.randrange(10000):04d}.bin"] = os.urandom(rng.randint(0, 64))
    return how


def _edit(tree: dict, rng: random.Random) -> str:
    """Replace, delete or add one value somewhere in a JSON tree."""
    path, parent, key = _random_place(tree, rng)
    how = rng.choice(["huge", "huge", "odd", "delete", "add", "scale"])
    if how == "delete" and isinstance(parent, dict):
        del parent[key]
    elif how == "add" and isinstance(parent, dict):
        parent[rng.choice(["extra", "header", "digest", "kind", "member"])] = rng.choice(HUGE + ODD)
    elif how == "add" and isinstance(parent, list):
        parent.append(rng.choice(HUGE + ODD + [parent[key]]))
    elif how == "scale" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = type(parent[key])(parent[key] * rng.choice([-1, 2, 3, 10, 0.5]))
    else:
        parent[key] = rng.choice(HUGE + ODD)
    return f"{how} {path}"


def _random_place(tree, rng: random.Random) -> tuple[str, object, object]:
    """A random (path, parent, key) below the root, favouring short paths."""
    path, parent, key = "", None, None
    node = tree
    while isinstance(node, (dict, list)) and node and (parent is None or rng.random() < 0.6):
        key = rng.choice(sorted(node)) if isinstance(node, dict) else rng.randrange(len(node))
        parent, node, path = node, node[key], f"{path}/{key}"
    return path, parent, key


def _zip_level(data: bytes, rng: random.Random) -> tuple[bytes, bool, str]:
    """A zip-level edit: a central-directory field (declared sizes, method), a duplicate entry, a deflate
    bomb, or cut bytes."""
    manifest, members = _unzip(data)
    strict = "digest" in manifest
    how = rng.choice(["size", "size", "method", "duplicate", "bomb", "deflated members", "cut"])
    if how == "duplicate":
        buffer = io.BytesIO(data)
        with zipfile.ZipFile(buffer, "a") as zf, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name": what this mutant is for
            name = rng.choice(zf.namelist())
            zf.writestr(name, b"{}" if name == "manifest.json" else b"\0" * 16)
        return buffer.getvalue(), strict, how
    if how == "bomb":  # members of 64 MiB of zeros deflated to 64 KiB
        members[rng.choice(sorted(members) or ["slices/0000.bin"])] = bytes(64 << 20)
        return _zip(manifest, members, zipfile.ZIP_DEFLATED), strict, how
    if how == "deflated members":
        return _zip(manifest, members, zipfile.ZIP_DEFLATED), strict, how
    if how == "cut":
        return data[:rng.randrange(len(data))], strict, how
    out = bytearray(data)
    entries = [i for i in range(len(out)) if out.startswith(b"PK\x01\x02", i)]
    at = rng.choice(entries)
    if how == "size":  # declared uncompressed (and maybe compressed) size
        value = rng.choice([0, 1, 2**20, 2**30, 2**31, 2**32 - 1, rng.randrange(2**16)])
        fields = [24] + ([20] if rng.random() < 0.5 else [])
        for offset in fields:
            out[at + offset:at + offset + 4] = struct.pack("<I", value)
        return bytes(out), strict, f"size {value}"
    out[at + 10:at + 12] = struct.pack("<H", rng.choice([0, 8, 12, 14, 99]))
    return bytes(out), strict, how


# --- running cases -------------------------------------------------------------------------------------


def run_case(data: bytes, reference: np.ndarray, strict: bool) -> tuple[str, str]:
    """(outcome, detail): "error" (ArchiveError), "same" (the original's voxels), "other" (a valid volume
    that differs: allowed only when not `strict`), or "crash"."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".sirz") as f:
        f.write(data)
        f.flush()
        try:
            volume = decompress(read_archive(f.name))
        except ArchiveError as exc:
            return "error", str(exc)
        except Exception as exc:  # noqa: BLE001 - every other exception is what the fuzzer looks for
            return "crash", f"{type(exc).__name__}: {exc}"
    if volume.data.shape == reference.shape and np.array_equal(volume.data, reference):
        return "same", ""
    if strict:
        return "crash", "decoded to different voxels despite an unchanged integrity check"
    return "other", ""


def _worker(connection, references: dict[str, np.ndarray], limit: int, trace: bool) -> None:
    """Decode the cases sent over `connection` under an address-space limit; reply (outcome, detail, peak
    traced bytes, or 0 without `trace`) for each."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if trace:
        tracemalloc.start()
    while True:
        case = connection.recv()
        tracemalloc.reset_peak()
        outcome, detail = run_case(case.data, references[case.name], case.strict)
        connection.send((outcome, detail, tracemalloc.get_traced_memory()[1]))


class Workers:
    """One memory-limited worker process (spawned: no torch, no inherited memory), restarted after a
    timeout or a death; with `trace`, it measures each case's peak allocation (tracemalloc: slower)."""

    def __init__(self, references: dict[str, np.ndarray], limit: int = MEMORY_LIMIT, trace: bool = False) -> None:
        self.references, self.limit, self.trace, self.process = references, limit, trace, None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
        self.process = context.Process(target=_worker, args=(child, self.references, self.limit, self.trace),
                                       daemon=True)
        self.process.start()

    def run(self, case: Case, timeout: float) -> tuple[str, str, int, float]:
        """(outcome, detail, peak bytes, seconds); outcome "hang" after `timeout` seconds, "crash" when the
        worker died."""
        if self.process is None:
            self._start()
        start = time.monotonic()
        self.connection.send(case)
        try:
            if self.connection.poll(timeout):
                return (*self.connection.recv(), time.monotonic() - start)
            outcome, detail = "hang", f"no answer in {timeout:g} s"
        except (EOFError, OSError):
            outcome, detail = "crash", f"the worker died (exit code {self.process.exitcode})"
        self.close()
        return outcome, detail, 0, time.monotonic() - start

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join()
            self.process = None


def references(archives: dict[str, bytes]) -> dict[str, np.ndarray]:
    """The voxels each base archive decodes to."""
    import tempfile

    out = {}
    for name, data in archives.items():
        with tempfile.NamedTemporaryFile(suffix=".sirz") as f:
            f.write(data)
            f.flush()
            out[name] = decompress(read_archive(f.name)).data
    return out
