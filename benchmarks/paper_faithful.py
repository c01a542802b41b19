"""First benchmark rows: the paper-faithful siren codec on the real sample, beside gzip and JPEG 2000.

The sample (mdt's in-vivo b1k_b2k, float32) is rounded to 16-bit integers first, so that every codec
sees the same integer data. JPEG 2000 is sized to the siren archive's bytes (quality bisected).

    python benchmarks/paper_faithful.py [--epochs N] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from SirenCompressLib import SirenConfig, Volume4D, compare, compress, decompress, read_volume
from SirenCompressLib.archive import to_bytes
from SirenCompressLib.evaluate.classical import gzip_coded, jpeg2000_at_size
from SirenCompressLib.sample import SAMPLE_FILES, sample_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=SirenConfig().epochs)
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()

    folder = sample_folder()
    image, bval, bvec = (folder / name for name in SAMPLE_FILES.values())
    volume = read_volume(image, bval, bvec)
    volume = Volume4D(np.rint(volume.data).astype(np.int16), volume.ijk_to_ras, volume.gradients)
    data = volume.data
    raw16 = data.size * 2
    rows = []

    config = SirenConfig(epochs=args.epochs)
    start = time.perf_counter()
    archive = compress(volume, config=config)
    encode_s = time.perf_counter() - start
    nbytes = len(to_bytes(archive))
    start = time.perf_counter()
    decoded = decompress(archive).data
    decode_s = time.perf_counter() - start
    rows.append(_row(f"siren {config.layers}×{config.units}, {config.epochs} epochs, fp16+LZMA", nbytes, raw16,
                     compare(data, decoded).whole, encode_s, decode_s, data.shape[2]))

    start = time.perf_counter()
    gz = gzip_coded(data)
    rows.append(_row(gz.name + " (lossless)", gz.nbytes, raw16, compare(data, data).whole,
                     time.perf_counter() - start, None, data.shape[2]))
    for layout in ("tiled", "per-image"):
        start = time.perf_counter()
        j2k = jpeg2000_at_size(data, nbytes, layout)
        rows.append(_row(j2k.name + " at the same size", j2k.nbytes, raw16, compare(data, j2k.decoded).whole,
                         None, None, data.shape[2]))

    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
              f"device {'cuda' if torch.cuda.is_available() else 'cpu'}"
    print(f"data: mdt b1k_b2k sample, {'×'.join(map(str, data.shape))}, rounded to int16; machine: {machine}\n")
    print("| codec | bytes | CR (raw 16-bit) | PSNR dB | SSIM | encode s/slice |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        per_slice = "" if r["encode_s_per_slice"] is None else f"{r['encode_s_per_slice']:.1f}"
        psnr = "∞" if r["psnr"] is None else f"{r['psnr']:.2f}"
        print(f"| {r['codec']} | {r['bytes']:,} | {r['ratio_raw16']:.2f} | {psnr} | {r['ssim']:.4f} | {per_slice} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "shape": list(data.shape), "rows": rows}, f, indent=1)


def _row(codec, nbytes, raw16, metrics, encode_s, decode_s, slices) -> dict:
    return {"codec": codec, "bytes": nbytes, "ratio_raw16": raw16 / nbytes, **metrics.to_json(),
            "encode_s_per_slice": None if encode_s is None else encode_s / slices, "decode_s": decode_s}


if __name__ == "__main__":
    main()
