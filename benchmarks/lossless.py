"""Lossless codecs side by side on integer dMRI: general-purpose compressors, the JPEG family's lossless
modes (per 2D image and tiled: all volumes of a slice in one mosaic), and SirenCompress's lossless codec.

Every codec's output is decoded and checked to be bit-exact. Compression ratio = raw bytes (2 per voxel
for int16) / coded bytes; seconds are wall time on this machine, one run each.

    python benchmarks/lossless.py                 # the real sample, rounded to int16
    python benchmarks/lossless.py --phantom       # the synthetic DWI phantom (int16)
    python benchmarks/lossless.py --moved         # the sample with in-plane motion added (+ ours with --motion)
"""

from __future__ import annotations

import argparse
import gzip
import lzma
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from SirenCompressLib import Volume4D, motion, read_volume
from SirenCompressLib.archive import read_archive, write_archive
from SirenCompressLib.codecs import lossless
from SirenCompressLib.evaluate.classical import mosaic, unmosaic
from SirenCompressLib.phantom import dwi_phantom
from SirenCompressLib.pipeline import compress, decompress
from SirenCompressLib.sample import SAMPLE_FILES, sample_folder


def whole(encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]):
    """A byte compressor applied to the raw voxel bytes."""

    def run(data: np.ndarray) -> tuple[int, float, float]:
        start = time.perf_counter()
        code = encode(data.tobytes())
        middle = time.perf_counter()
        back = np.frombuffer(decode(code), dtype=data.dtype).reshape(data.shape)
        end = time.perf_counter()
        assert np.array_equal(back, data)
        return len(code), middle - start, end - middle

    return run


def images(encode: Callable[[np.ndarray], bytes], decode: Callable[[bytes], np.ndarray], tiled: bool):
    """A 2D image codec on unsigned 16-bit images (the data shifted to start at 0; the shift costs 2 bytes
    per image, counted), per image or tiled."""

    def run(data: np.ndarray) -> tuple[int, float, float]:
        shift = int(data.min())
        unsigned = (data.astype(np.int64) - shift).astype(np.uint16)
        nz, nv = data.shape[2], data.shape[3]
        start = time.perf_counter()
        if tiled:
            codes = [encode(mosaic(unsigned[:, :, z])) for z in range(nz)]
        else:
            codes = [encode(np.ascontiguousarray(unsigned[:, :, z, v])) for z in range(nz) for v in range(nv)]
        middle = time.perf_counter()
        decoded = [decode(c) for c in codes]
        end = time.perf_counter()
        if tiled:
            back = np.stack([unmosaic(d, nv) for d in decoded], axis=2)
        else:
            back = np.stack(decoded, axis=-1).reshape(*data.shape[:2], nz, nv)
        assert np.array_equal(back.astype(np.int64) + shift, data.astype(np.int64))
        return sum(map(len, codes)) + 2 * len(codes), middle - start, end - middle

    return run


def ours(volume: Volume4D, folder: Path, config: lossless.Config) -> Callable[[np.ndarray], tuple[int, float, float]]:
    """SirenCompress's lossless codec: compress to a .sirz file, read it back and decode."""

    def run(data: np.ndarray) -> tuple[int, float, float]:
        path = folder / "lossless.sirz"
        start = time.perf_counter()
        n = write_archive(compress(volume, "lossless", config), path, force=True)
        middle = time.perf_counter()
        back = decompress(read_archive(path)).data
        end = time.perf_counter()
        assert np.array_equal(back, data)
        return n, middle - start, end - middle

    return run


def baselines() -> dict[str, Callable]:
    import imagecodecs

    return {
        "gzip -9": whole(lambda b: gzip.compress(b, 9, mtime=0), gzip.decompress),
        "xz -9": whole(lambda b: lzma.compress(b, preset=9), lzma.decompress),
        "zstd -19": whole(lambda b: imagecodecs.zstd_encode(b, level=19), imagecodecs.zstd_decode),
        "JPEG-LS per image": images(lambda im: imagecodecs.jpegls_encode(im, level=0),
                                    imagecodecs.jpegls_decode, False),
        "JPEG-LS tiled": images(lambda im: imagecodecs.jpegls_encode(im, level=0), imagecodecs.jpegls_decode, True),
        "JPEG 2000 per image": images(lambda im: imagecodecs.jpeg2k_encode(im, level=0, reversible=True),
                                      imagecodecs.jpeg2k_decode, False),
        "JPEG 2000 tiled": images(lambda im: imagecodecs.jpeg2k_encode(im, level=0, reversible=True),
                                  imagecodecs.jpeg2k_decode, True),
        "JPEG XL per image": images(lambda im: imagecodecs.jpegxl_encode(im, lossless=True, effort=7),
                                    imagecodecs.jpegxl_decode, False),
        "JPEG XL tiled": images(lambda im: imagecodecs.jpegxl_encode(im, lossless=True, effort=7),
                                imagecodecs.jpegxl_decode, True),
        "JPEG XL tiled, effort 9": images(lambda im: imagecodecs.jpegxl_encode(im, lossless=True, effort=9),
                                          imagecodecs.jpegxl_decode, True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantom", action="store_true")
    parser.add_argument("--moved", action="store_true",
                        help="turn every volume after the first by up to 3° and shift it by up to 2 voxels")
    args = parser.parse_args()
    if args.phantom:
        volume = dwi_phantom(shape=(64, 64, 4), directions=30, bvalues=(1000.0, 2000.0), b0s=3, noise=0.02,
                             seed=0)
        name = "phantom 64×64×4, 3 b0 + 2 shells × 30 directions, Rician noise σ = 2 % of S0 (1000), int16"
    else:
        sample = read_volume(*(sample_folder() / f for f in SAMPLE_FILES.values()))
        volume = Volume4D(np.rint(sample.data).astype(np.int16), sample.ijk_to_ras, sample.gradients)
        name = "real sample (mdt b1k_b2k) rounded to int16"
    if args.moved:
        volume = motion.simulate(volume)
        name += ", with in-plane motion added"
    data = volume.data
    raw = data.size * 2
    print(f"{name}: {'×'.join(map(str, data.shape))}, raw {raw:,} bytes\n")
    print("| codec | bytes | CR | encode s | decode s |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        ourselves = {"SirenCompress lossless": ours(volume, Path(folder), lossless.Config())}
        if args.moved:
            ourselves["SirenCompress lossless --motion"] = ours(volume, Path(folder), lossless.Config(motion=True))
        for label, run in {**baselines(), **ourselves}.items():
            n, encode_s, decode_s = run(data)
            print(f"| {label} | {n:,} | {raw / n:.2f} | {encode_s:.2f} | {decode_s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
