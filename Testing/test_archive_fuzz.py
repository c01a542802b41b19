"""Fuzzing the archive reader: every mutant of a tiny real archive of each codec decodes correctly or raises
`ArchiveError` (never another exception, a death under the memory limit or a hang), and the CLI answers a
malformed archive with exit 2 and one line."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest

import fuzzing
from conftest import run_cli
from SirenCompressLib import ArchiveError, decompress, read_archive, write_volume

CASES = 60  # per base archive: 660 in all
MEMORY_LIMIT = 2 << 30


@pytest.fixture(scope="module")
def archives() -> dict[str, bytes]:
    return fuzzing.base_archives()


@pytest.fixture(scope="module")
def workers(archives):
    workers = fuzzing.Workers(fuzzing.references(archives), MEMORY_LIMIT)
    yield workers
    workers.close()


@pytest.mark.parametrize("name", ["siren", "siren-rans", "siren3d", "lossless", "lossless-float", "lossless-near",
                                  "transform", "fmri", "siren-v1", "lossless-v1", "fmri-v1"])
def test_every_mutant_decodes_correctly_or_is_an_archive_error(archives, workers, name):
    rng = random.Random(name)
    outcomes, failures = collections.Counter(), []
    for _ in range(CASES):
        case = fuzzing.mutate(name, archives[name], rng)
        outcome, detail, _, _ = workers.run(case, timeout=60)
        outcomes[outcome] += 1
        if outcome in ("crash", "hang"):
            failures.append(f"{case.mutation}: {outcome}: {detail}")
    assert not failures, "\n".join(failures)
    assert outcomes["error"] > CASES / 2  # the mutator damages


@pytest.mark.parametrize("name", ["siren", "siren3d", "lossless", "lossless-float", "lossless-near", "transform",
                                  "fmri", "lossless-v1"])
def test_an_edit_that_changes_no_meaning_decodes_the_same(tmp_path, archives, workers, name):
    """The checks refuse damage, not every change: a re-signed archive with another encode time decodes."""
    case = fuzzing.Case(name, fuzzing.edited(archives[name], _set("encode_seconds", value=1234.5)), True, "time")
    assert workers.run(case, timeout=60)[0] == "same"


def _set(*path, value):
    def edit(manifest, members):
        node = manifest
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("name, edit, message", [
    ("siren", _set("codec", "config", "layers", value=2**31), "layers must be 1 to 64"),
    ("siren", _set("codec", "config", "units", value=16000), "more than its .*member can hold"),
    ("siren3d", _set("codec", "config", "basis", value=9000), "more than its .*member can hold"),
    ("fmri", _set("codec", "config", "components", value=2**40), "components must be 1 to 4096"),
    ("siren", _set("shape", 0, value=2**20), "voxels, more than an archive of"),
    ("siren", _set("ijk_to_ras", 1, value=[0, 0, 0, 0]), "singular"),
    ("siren", _set("scaling", 0, value=0), "slope must not be 0"),
    ("siren", lambda m, members: m.pop("gradients"), "has no 'gradients'"),
    ("siren", _set("slices", 0, "bytes", value="12"), "slice entry 0 is malformed"),
    ("siren3d", _set("slices", 1, "member", value=None), "needs min, max and a member"),
    ("lossless", _set("codec", "config", "quantize", value=1e300), "take no quantisation step"),
    ("lossless-float", lambda m, members: m["value_range"].__setitem__(1, m["value_range"][0]), "SHA-256"),
    ("lossless-float", _set("dtype", value="float64"), "SHA-256"),
    ("lossless-float", _set("codec", "config", "quantize", value=2**31), "SHA-256"),  # found by the long run
    ("lossless-v1", _set("codec", "config", "quantize", value=-1.0), "quantize must be above 0"),
    ("lossless-near", _set("slices", 0, "max_error", value=1), "SHA-256"),  # a bound the member was not coded with
    ("lossless-near", _set("slices", 0, "max_error", value=0), "max_error must be an integer 1 to"),
    ("lossless", _set("slices", 0, "max_error", value=2), "SHA-256"),
])
def test_malformed_manifests_are_refused(tmp_path, archives, name, edit, message):
    path = tmp_path / "bad.sirz"
    path.write_bytes(fuzzing.edited(archives[name], edit))
    with pytest.raises(ArchiveError, match=message):
        decompress(read_archive(path))


@pytest.mark.parametrize("name", ["siren", "lossless", "fmri"])
def test_format_1_archives_still_decode(tmp_path, archives, name):
    for suffix in ("", "-v1"):
        (tmp_path / f"{name}{suffix}.sirz").write_bytes(archives[name + suffix])
    old, new = (decompress(read_archive(tmp_path / f"{name}{suffix}.sirz")) for suffix in ("-v1", ""))
    assert read_archive(tmp_path / f"{name}-v1.sirz").manifest["format_version"] == 1
    np.testing.assert_array_equal(old.data, new.data)


@pytest.mark.parametrize("command", ["decompress", "info", "evaluate"])
def test_cli_answers_a_malformed_archive_with_exit_2_and_one_line(tmp_path, archives, command):
    bad = tmp_path / "bad.sirz"
    bad.write_bytes(fuzzing.edited(archives["siren"], _set("codec", "config", "layers", value=2**31)))
    if command == "decompress":
        args = [bad, "-o", tmp_path / "out.nii.gz"]
    elif command == "info":
        args = [bad]
    else:
        original = tmp_path / "original.nii.gz"
        (tmp_path / "good.sirz").write_bytes(archives["siren"])
        write_volume(decompress(read_archive(tmp_path / "good.sirz")), original)
        args = [original, bad]
    result = run_cli(command, *args, block_torch=True)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "layers must be 1 to 64" in result.stderr
