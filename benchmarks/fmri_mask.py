"""The fmri codec's mask on the fMRI phantom, normal and with a dim task region (its baseline at `--dim` of
the normal one, its response kept): archive bytes, PSNR, voxels decoded as constants (no temporal
variation at all) and, in the dim region, the correlation of the decoded region-mean time course with the
original's and with the noise-free one.

    python benchmarks/fmri_mask.py [--epochs 300] [--units 64] [--dim 0.05]
"""

from __future__ import annotations

import argparse

import numpy as np

from SirenCompressLib.archive import to_bytes
from SirenCompressLib.codecs import fmri
from SirenCompressLib.fmri_phantom import fmri_phantom
from SirenCompressLib.pipeline import compress, decompress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--dim", type=float, default=0.05)
    args = parser.parse_args()
    config = fmri.Config(units=args.units, epochs=args.epochs, qat_epochs=args.epochs // 5, device="cpu")
    print("| phantom | bytes | PSNR dB | constant voxels | dim region r (original) | r (noise-free) |")
    print("|---|---|---|---|---|---|")
    for name, dim in (("normal", 1.0), (f"region 1 at {args.dim:g}", args.dim)):
        p = fmri_phantom(dim=dim)
        clean = fmri_phantom(dim=dim, noise=0.0).volume.data
        archive = compress(p.volume, "fmri", config)
        decoded = decompress(archive).data.astype(np.float64)
        constant = int((np.ptp(decoded, axis=3) == 0).sum())
        region = p.labels == 1
        got = decoded[region].mean(axis=0)
        r_original = np.corrcoef(got, p.volume.data[region].mean(axis=0))[0, 1]
        r_clean = np.corrcoef(got, clean[region].mean(axis=0))[0, 1]
        print(f"| {name} | {len(to_bytes(archive))} | {archive.manifest['metrics']['psnr']:.2f} | {constant} of "
              f"{region.size} | {r_original:.3f} | {r_clean:.3f} |")


if __name__ == "__main__":
    main()
