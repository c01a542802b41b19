"""The bundled real sample: in-vivo brain dMRI shipped by the `mdt` package (installed with --no-deps).

104×104×2 slices × 103 volumes (b = 0, 1000, 2000 s/mm²), float32. Nothing is imported from mdt;
its data files are only read.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from .atomic import atomic_outputs
from .errors import InputError

SAMPLE_FOLDER = ("data", "mdt_example_data", "b1k_b2k")
SAMPLE_FILES = {"b1k_b2k.nii.gz": "b1k_b2k_example_slices_24_38.nii.gz",
                "b1k_b2k.bval": "b1k_b2k.bval", "b1k_b2k.bvec": "b1k_b2k.bvec"}


def sample_folder() -> Path:
    """Where the mdt package keeps the in-vivo dMRI sample.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        When mdt is not installed or has no sample data.
    """
    spec = importlib.util.find_spec("mdt")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the bundled sample needs the mdt package: pip install --no-deps mdt")
    folder = Path(list(spec.submodule_search_locations)[0]).joinpath(*SAMPLE_FOLDER)
    if not folder.is_dir():
        raise InputError(f"the mdt package has no sample data at {folder}")
    return folder


def copy_sample(destination: str | Path, force: bool = False) -> Path:
    """Copy the sample into a folder as b1k_b2k.nii.gz, .bval and .bvec.

    Parameters
    ----------
    destination : str or Path
        The folder (created if needed).
    force : bool
        Replace existing files.

    Returns
    -------
    Path
        The image's path.

    Raises
    ------
    InputError
        When the sample is not available.
    OutputError
        When a file exists (without `force`) or cannot be written.
    """
    source, destination = sample_folder(), Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    targets = [destination / name for name in SAMPLE_FILES]
    with atomic_outputs(targets, force) as temps:
        for temp, original in zip(temps, SAMPLE_FILES.values()):
            shutil.copyfile(source / original, temp)
    return targets[0]
