"""Atomic output files: write to hidden temporary files beside the targets, rename when all succeeded."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

PARTIAL_PREFIX = ".partial-"


def check_outputs(paths: Sequence[str | os.PathLike], force: bool) -> None:
    """Raise `OutputError` if an output exists (without `force`) or its folder is not writable."""
    for path in map(Path, paths):
        if path.is_dir():
            raise OutputError(f"{path}: is a folder, expected a file name")
        if path.exists() and not force:
            raise OutputError(f"{path}: exists already; use --force to replace it")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise OutputError(f"{folder}: no such folder for the output")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"{folder}: folder is not writable")


@contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike], force: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths to write; on success rename each onto its target, else delete them all.

    The temporary names keep the target's file name as suffix, so extension-driven writers
    (.nii.gz, .nrrd) behave as for the target.
    """
    targets = [Path(p) for p in paths]
    check_outputs(targets, force)
    token = secrets.token_hex(4)
    temps = [t.with_name(f"{PARTIAL_PREFIX}{token}-{t.name}") for t in targets]
    try:
        yield temps
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
    except OSError as exc:
        raise OutputError(f"cannot write {targets[0]}: {exc.strerror or exc}") from None
    finally:
        for temp in temps:
            try:
                temp.unlink()
            except FileNotFoundError:
                pass
