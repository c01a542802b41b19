"""SirenCompress: compress 4D MRI (diffusion, functional, any multi-volume): transform coding with a learned
entropy model, per-slice sine networks (SIREN), an fMRI codec and a lossless one.

    >>> from SirenCompressLib import read_volume, compress, write_archive, read_archive, decompress
    >>> volume = read_volume("dwi.nii.gz")            # finds dwi.bval / dwi.bvec beside it
    >>> archive = compress(volume)                      # diffusion data: the transform codec, Δ = noise σ
    >>> paper = compress(volume, config=SirenConfig(epochs=500))  # the siren codec, the paper's settings
    >>> write_archive(archive, "dwi.sirz")
    >>> decoded = decompress(read_archive("dwi.sirz"))  # numpy only, no torch

Training imports torch on first use; reading and decoding archives never do. `save_scene` and `load_scene`
(a whole 3D Slicer scene as one .sirz) need Slicer's MRML (slicer-core headless), imported when first used.
"""

from .archive import Archive, read_archive, write_archive  # noqa: E402
from .codecs.siren import PRESETS as SIREN_PRESETS  # noqa: E402
from .codecs.siren import Config as SirenConfig  # noqa: E402
from .errors import ArchiveError, InputError, OutputError, SirenCompressError  # noqa: E402
from .io import read_volume, write_volume  # noqa: E402
from .metrics import Comparison, Metrics, compare  # noqa: E402
from .noise import NoiseEstimate, estimate_noise, noise_fraction, snr_loss  # noqa: E402
from .pipeline import compress, decompress, sizes  # noqa: E402
from .scene_archive import SceneArchive, read_scene_archive  # noqa: E402
from .version import __version__  # noqa: E402, F401
from .volume import FrameIndex, Gradients, Volume4D  # noqa: E402

__all__ = [
    "Archive", "ArchiveError", "Comparison", "FrameIndex", "Gradients", "InputError", "Metrics", "NoiseEstimate",
    "OutputError", "SIREN_PRESETS", "SirenCompressError", "SirenConfig", "Volume4D", "compare", "compress",
    "decompress", "estimate_noise", "load_scene", "noise_fraction", "read_archive", "read_scene_archive",
    "read_volume", "save_scene", "SceneArchive", "sizes", "snr_loss", "write_archive", "write_volume",
]


def __getattr__(name: str):
    """`save_scene` and `load_scene` (`slicer_scene`), imported on first use: they need Slicer's MRML."""
    if name in ("save_scene", "load_scene"):
        from . import slicer_scene

        return getattr(slicer_scene, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
