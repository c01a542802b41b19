"""SirenCompress: compress 4D MRI (diffusion, functional, any multi-volume): transform coding with a learned
entropy model, per-slice sine networks (SIREN), an fMRI codec and a lossless one.

    >>> from SirenCompressLib import read_volume, compress, write_archive, read_archive, decompress
    >>> volume = read_volume("dwi.nii.gz")            # finds dwi.bval / dwi.bvec beside it
    >>> archive = compress(volume)                      # diffusion data: the transform codec, Δ = noise σ
    >>> paper = compress(volume, config=SirenConfig(epochs=500))  # the siren codec, the paper's settings
    >>> write_archive(archive, "dwi.sirz")
    >>> decoded = decompress(read_archive("dwi.sirz"))  # numpy only, no torch

Training imports torch on first use; reading and decoding archives never do.
"""

from .archive import Archive, read_archive, write_archive  # noqa: E402
from .codecs.siren import PRESETS as SIREN_PRESETS  # noqa: E402
from .codecs.siren import Config as SirenConfig  # noqa: E402
from .errors import ArchiveError, InputError, OutputError, SirenCompressError  # noqa: E402
from .io import read_volume, write_volume  # noqa: E402
from .metrics import Comparison, Metrics, compare  # noqa: E402
from .noise import NoiseEstimate, estimate_noise, noise_fraction, snr_loss  # noqa: E402
from .pipeline import compress, decompress, sizes  # noqa: E402
from .version import __version__  # noqa: E402, F401
from .volume import FrameIndex, Gradients, Volume4D  # noqa: E402

__all__ = [
    "Archive", "ArchiveError", "Comparison", "FrameIndex", "Gradients", "InputError", "Metrics", "NoiseEstimate",
    "OutputError", "SIREN_PRESETS", "SirenCompressError", "SirenConfig", "Volume4D", "compare", "compress",
    "decompress", "estimate_noise", "noise_fraction", "read_archive", "read_volume", "sizes", "snr_loss",
    "write_archive", "write_volume",
]
