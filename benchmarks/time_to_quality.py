"""Time to quality: seconds until a slice's stored weights reach a PSNR, paper-faithful loop vs faster settings.

Each setting trains slice 0 of the real sample (rounded to int16) with early stop at the target PSNR
(`target_psnr`), on this machine, one after the other; the ratio is paper seconds / setting seconds.

    python benchmarks/time_to_quality.py [--psnr 45] [--max-epochs 3000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from SirenCompressLib import SirenConfig, Volume4D, compress, read_volume
from SirenCompressLib.codecs.siren import PRESETS
from SirenCompressLib.sample import SAMPLE_FILES, sample_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--psnr", type=float, default=45.0)
    parser.add_argument("--max-epochs", type=int, default=3000)
    args = parser.parse_args()
    folder = sample_folder()
    volume = read_volume(*(folder / name for name in SAMPLE_FILES.values()))
    volume = Volume4D(np.rint(volume.data[:, :, :1]).astype(np.int16), volume.ijk_to_ras)
    paper = PRESETS["paper"].to_json()
    settings = {
        "paper (fp32, per-slice loop)": SirenConfig(**paper),
        "paper + bf16 autocast": SirenConfig(**{**paper, "precision": "bf16"}),
        "paper + lr 1e-3": SirenConfig(**{**paper, "lr": 1e-3}),
        "paper + bf16 + lr 1e-3": SirenConfig(**{**paper, "precision": "bf16", "lr": 1e-3}),
    }
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"target {args.psnr} dB on slice 0 of the sample, at most {args.max_epochs} epochs\n")
    print("| setting | epochs | seconds | PSNR dB | speed-up vs paper |")
    print("|---|---|---|---|---|")
    reference = None
    for name, config in settings.items():
        config = SirenConfig(**{**config.to_json(), "epochs": args.max_epochs, "target_psnr": args.psnr})
        epochs = []
        start = time.perf_counter()
        archive = compress(volume, config=config,
                           progress=lambda e: epochs.append(e["epoch"]) if e["event"] == "epoch" else None)
        seconds = time.perf_counter() - start
        psnr = archive.manifest["metrics"]["psnr"]
        reached = psnr >= args.psnr - 0.05
        reference = reference or (seconds if reached else None)
        ratio = f"{reference / seconds:.2f}×" if reference and reached else "target not reached"
        print(f"| {name} | {epochs[-1]} | {seconds:.1f} | {psnr:.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
