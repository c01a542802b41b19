"""Slices trained together vs one after the other: the same networks, the time they take.

Compresses the real sample (2 slices, rounded to int16) with the compact preset at a fixed number of
epochs, once per batch size (1 = the per-slice loop), on this machine, one run after the other.

    python benchmarks/batched_slices.py [--epochs 300] [--batches 1 2] [--device auto]
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
from SirenCompressLib.nets import pick_device
from SirenCompressLib.sample import SAMPLE_FILES, sample_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    volume = read_volume(*(sample_folder() / name for name in SAMPLE_FILES.values()))
    volume = Volume4D(np.rint(volume.data).astype(np.int16), volume.ijk_to_ras)
    device = pick_device(args.device)
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, device {device}; "
          f"compact, {args.epochs}+0 epochs, {volume.shape[2]} slices\n")
    print("| slices per batch | seconds | PSNR dB | speed-up |\n|---|---|---|---|")
    reference = None
    for size in args.batches:
        config = SirenConfig(**{**PRESETS["compact"].to_json(), "epochs": args.epochs, "qat_epochs": 0,
                                "batch_slices": size, "device": args.device})
        start = time.perf_counter()
        archive = compress(volume, config=config)
        seconds = time.perf_counter() - start
        reference = reference or seconds
        print(f"| {size} | {seconds:.1f} | {archive.manifest['metrics']['psnr']:.2f} | {reference / seconds:.2f}× |",
              flush=True)


if __name__ == "__main__":
    main()
