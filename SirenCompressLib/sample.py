"""The bundled real samples: in-vivo brain dMRI shipped by the `mdt` package (installed with --no-deps).

Two acquisitions of one subject and session, the same 2 slices (104×104×2 voxels of 2 mm), float32:
"b1k_b2k" (the default sample), 103 volumes: 13 at b = 0, 30 at b = 1000 and 60 at b = 2000 s/mm²;
"multishell_b6k_max", 114 volumes: 6 at b = 0 and 108 on 8 shells from b = 750 to 6000 s/mm².
Nothing is imported from mdt (LGPL-3.0); its data files are only read.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from .atomic import atomic_outputs
from .errors import InputError

SAMPLE_FOLDER = ("data", "mdt_example_data")
SAMPLES = {  # name: {file name written: file name in mdt}
    "b1k_b2k": {"b1k_b2k.nii.gz": "b1k_b2k_example_slices_24_38.nii.gz",
                "b1k_b2k.bval": "b1k_b2k.bval", "b1k_b2k.bvec": "b1k_b2k.bvec"},
    "multishell_b6k_max": {"multishell_b6k_max.nii.gz": "multishell_b6k_max_example_slices_24_38.nii.gz",
                           "multishell_b6k_max.bval": "multishell_b6k_max.bval",
                           "multishell_b6k_max.bvec": "multishell_b6k_max.bvec"},
}
SAMPLE_FILES = SAMPLES["b1k_b2k"]


def sample_folder(name: str = "b1k_b2k") -> Path:
    """Where the mdt package keeps the in-vivo dMRI sample `name`.

    Parameters
    ----------
    name : str
        A key of `SAMPLES`.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        When the name is unknown, or mdt is not installed or has no such sample.
    """
    if name not in SAMPLES:
        raise InputError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")
    spec = importlib.util.find_spec("mdt")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the bundled sample needs the mdt package: pip install --no-deps mdt")
    folder = Path(list(spec.submodule_search_locations)[0]).joinpath(*SAMPLE_FOLDER, name)
    if not folder.is_dir():
        raise InputError(f"the mdt package has no sample data at {folder}")
    return folder


def sample_files(name: str = "b1k_b2k") -> list[Path]:
    """The sample's image, .bval and .bvec in mdt's folder, in the order `read_volume` takes them.

    Parameters
    ----------
    name : str
        A key of `SAMPLES`.

    Returns
    -------
    list of Path

    Raises
    ------
    InputError
        When the sample is not available.
    """
    folder = sample_folder(name)
    return [folder / original for original in SAMPLES[name].values()]


def copy_sample(destination: str | Path, force: bool = False, name: str = "b1k_b2k") -> Path:
    """Copy the sample `name` into a folder as NAME.nii.gz, .bval and .bvec.

    Parameters
    ----------
    destination : str or Path
        The folder (created if needed).
    force : bool
        Replace existing files.
    name : str
        A key of `SAMPLES`.

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
    sources, destination = sample_files(name), Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    targets = [destination / target for target in SAMPLES[name]]
    with atomic_outputs(targets, force) as temps:
        for temp, source in zip(temps, sources):
            shutil.copyfile(source, temp)
    return targets[0]
