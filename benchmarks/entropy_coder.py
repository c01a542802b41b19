"""Weight coders side by side: the same trained integer weights packed with LZMA and with adaptive rANS.

Trains one slice of the real sample (rounded to int16) with the compact preset at the given size, then
packs that network's weights both ways; prints the bytes of each part and the whole member.

    python benchmarks/entropy_coder.py [--units 221] [--epochs 300] [--qat-epochs 50] [--slice 0]
"""

from __future__ import annotations

import argparse

import numpy as np

from SirenCompressLib import SirenConfig, Volume4D, compress, network, read_volume
from SirenCompressLib.codecs import siren
from SirenCompressLib.sample import SAMPLE_FILES, sample_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=221)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--qat-epochs", type=int, default=50)
    parser.add_argument("--slice", type=int, default=0)
    args = parser.parse_args()
    volume = read_volume(*(sample_folder() / name for name in SAMPLE_FILES.values()))
    data = np.rint(volume.data[:, :, args.slice:args.slice + 1]).astype(np.int16)
    config = SirenConfig(**{**siren.PRESETS["compact"].to_json(), "units": args.units, "epochs": args.epochs,
                            "qat_epochs": args.qat_epochs})
    archive = compress(Volume4D(data, volume.ijk_to_ras), config=config)
    shapes = siren.layer_shapes(config, data.shape[-1])
    weights = network.unpack_weights(archive.members["slices/0000.bin"], shapes, config.weight_bits, config.coder)
    sizes = {coder: len(network.pack_weights(weights, config.weight_bits, coder)) for coder in siren.CODERS}
    print(f"slice {args.slice}: 3×{args.units}, {config.weight_bits}-bit, basis {config.basis}, "
          f"{args.epochs}+{args.qat_epochs} epochs, PSNR {archive.manifest['metrics']['psnr']:.2f} dB")
    print("| coder | member bytes | vs LZMA |\n|---|---|---|")
    for coder, n in sizes.items():
        print(f"| {coder} | {n:,} | {n / sizes['lzma'] - 1:+.2%} |")


if __name__ == "__main__":
    main()
