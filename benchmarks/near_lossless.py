"""Near-lossless (error-bounded) codecs side by side on integer dMRI at the same maximum error E: SirenCompress's
lossless codec with `--max-error E`, JPEG-LS near-lossless (`imagecodecs.jpegls_encode(level=E)`), SZ3 and SPERR
in absolute-error mode.

Every method's output is decoded and its maximum absolute error measured; a method that exceeds E fails the
run. JPEG-LS codes 16-bit unsigned images (the data shifted to start at 0, 2 bytes per image counted), per
image and tiled (all volumes of a slice in one mosaic). SZ3 and SPERR code float32 copies of the integers with
the bound E + 0.499 and the decode is rounded to integers, which keeps every voxel within ±E (E = 0.499 would
be lossless); they are tried on several array layouts (the whole 4D array, each slice as a 3D array of
volumes × x × y, the volumes in file order or sorted by b-value), and the smallest that keeps the bound is
reported. E given as `noiseK` is ⌊K·σ⌋, σ the noise estimate (`SirenCompressLib.noise.estimate_sigma`), the
bound `--max-error-noise K` gives. CR = raw 16-bit bytes / coded bytes.

    python benchmarks/near_lossless.py                                  # the real sample, rounded to int16
    python benchmarks/near_lossless.py --real multishell_b6k_max --errors 1 noise0.5 noise1
    python benchmarks/near_lossless.py --phantom                        # the ring phantom, int16
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from SirenCompressLib import Volume4D, read_volume
from SirenCompressLib.archive import read_archive, write_archive
from SirenCompressLib.codecs import lossless
from SirenCompressLib.evaluate.classical import mosaic, unmosaic
from SirenCompressLib.noise import estimate_sigma
from SirenCompressLib.phantom import dwi_phantom
from SirenCompressLib.pipeline import compress, decompress
from SirenCompressLib.sample import sample_files

Method = Callable[[np.ndarray, int], tuple[int, np.ndarray, str]]  # (data, E) → (bytes, decoded, layout)


def jpegls(tiled: bool) -> Method:
    """JPEG-LS near-lossless (NEAR = E) of the 2D images, per image or tiled."""
    import imagecodecs

    def run(data: np.ndarray, bound: int) -> tuple[int, np.ndarray, str]:
        shift = int(data.min())
        unsigned = (data.astype(np.int64) - shift).astype(np.uint16)
        nz, nv = data.shape[2], data.shape[3]
        if tiled:
            codes = [imagecodecs.jpegls_encode(mosaic(unsigned[:, :, z]), level=bound) for z in range(nz)]
            back = np.stack([unmosaic(imagecodecs.jpegls_decode(c), nv) for c in codes], axis=2)
        else:
            codes = [imagecodecs.jpegls_encode(np.ascontiguousarray(unsigned[:, :, z, v]), level=bound)
                     for z in range(nz) for v in range(nv)]
            back = np.stack([imagecodecs.jpegls_decode(c) for c in codes], axis=-1).reshape(data.shape)
        return sum(map(len, codes)) + 2 * len(codes), back.astype(np.int64) + shift, "2D, uint16"

    return run


def layouts(data: np.ndarray, bvals: np.ndarray | None) -> dict[str, tuple[list[np.ndarray], Callable]]:
    """float32 arrays to code and the function that puts their decodes back into (x, y, z, v) order."""
    nx, ny, nz, nv = data.shape
    orders = {"file order": np.arange(nv)}
    if bvals is not None:
        orders["by b-value"] = np.argsort(bvals, kind="stable")
    out = {}
    for name, order in orders.items():
        moved = np.ascontiguousarray(np.moveaxis(data[..., order], (3, 2), (0, 1)).astype(np.float32))  # v z x y

        def back_4d(arrays, order=order):
            out = np.empty((nx, ny, nz, nv), dtype=np.float64)
            out[..., order] = np.moveaxis(arrays[0], (0, 1), (3, 2))
            return out

        def back_slices(arrays, order=order):
            out = np.empty((nx, ny, nz, nv), dtype=np.float64)
            out[..., order] = np.moveaxis(np.stack(arrays, axis=1), (0, 1), (3, 2))
            return out

        out[f"4D, {name}"] = ([moved], back_4d)
        out[f"3D per slice, {name}"] = ([np.ascontiguousarray(moved[:, z]) for z in range(nz)], back_slices)
    return out


def error_bounded(encode: Callable, decode: Callable, dims: int, bvals) -> Method:
    """A float compressor with an absolute error bound, on the layouts of `layouts` with at most `dims`
    dimensions: the smallest that keeps ±E after rounding, and its layout."""

    def run(data: np.ndarray, bound: int) -> tuple[int, np.ndarray, str]:
        best = None
        for name, (arrays, back) in layouts(data, bvals).items():
            if arrays[0].ndim > dims:
                continue
            codes = [encode(a, bound + 0.499) for a in arrays]
            decoded = np.rint(back([decode(c, a) for c, a in zip(codes, arrays)])).astype(np.int64)
            n = sum(map(len, codes))
            if np.abs(decoded - data).max() <= bound and (best is None or n < best[0]):
                best = (n, decoded, name)
        return best

    return run


def anchors(bvals) -> dict[str, Method]:
    import imagecodecs

    sz3 = error_bounded(lambda a, e: imagecodecs.sz3_encode(a, mode=imagecodecs.SZ3.MODE.ABS, abs=e),
                        lambda c, a: imagecodecs.sz3_decode(c, a.shape, a.dtype), 4, bvals)
    sperr = error_bounded(lambda a, e: imagecodecs.sperr_encode(a, level=e, mode=imagecodecs.SPERR.MODE.PWE),
                          lambda c, a: imagecodecs.sperr_decode(c), 3, bvals)
    return {"JPEG-LS per image": jpegls(False), "JPEG-LS tiled": jpegls(True), "SZ3": sz3, "SPERR": sperr}


def ours(volume: Volume4D, folder: Path, noise: float | None = None) -> Method:
    """SirenCompress's lossless codec with --max-error E (or --max-error-noise K): a .sirz file, read back."""

    def run(data: np.ndarray, bound: int) -> tuple[int, np.ndarray, str]:
        config = lossless.Config(max_error=bound) if noise is None else lossless.Config(max_error_noise=noise)
        path = folder / "near.sirz"
        n = write_archive(compress(volume, "lossless", config), path, force=True)
        archive = read_archive(path)
        assert {entry.get("max_error", 0) for entry in archive.manifest["slices"]} == {bound}
        return n, decompress(archive).data.astype(np.int64), "4D (its own)"

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--real", default="b1k_b2k", help="mdt sample name (sirencompress sample --real)")
    source.add_argument("--phantom", action="store_true", help="the ring phantom (64×64×4 × 61, int16)")
    parser.add_argument("--errors", nargs="+", default=["1", "2", "4", "noise0.5", "noise1"],
                        help="bounds E: integers, or noiseK for ⌊K·σ⌋")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.phantom:
            volume = dwi_phantom(shape=(64, 64, 4), directions=30, bvalues=(1000.0, 2000.0), b0s=3, noise=0.02,
                                 seed=0)
            name = "ring phantom 64×64×4, 3 b0 + 2 shells × 30 directions, Rician noise 2 % of S0, int16"
        else:
            sample = read_volume(*sample_files(args.real))
            volume = Volume4D(np.rint(sample.data).astype(np.int16), sample.ijk_to_ras, sample.gradients)
            name = f"real sample (mdt {args.real}) rounded to int16"
        data = volume.data.astype(np.int64)
        sigma = estimate_sigma(volume.data)
        raw = data.size * 2
        print(f"{name}: {'×'.join(map(str, data.shape))}, raw {raw:,} bytes, noise σ = {sigma:.2f}\n")
        bvals = None if volume.gradients is None else np.asarray(volume.gradients.bvals)
        print("| E | method | layout | bytes | CR | max error | seconds |\n|---|---|---|---|---|---|---|")
        for text in args.errors:
            noise = float(text[5:]) if text.startswith("noise") else None
            bound = int(text) if noise is None else math.floor(noise * sigma)
            label = str(bound) if noise is None else f"{bound} (⌊{noise:g}σ⌋)"
            methods = {**anchors(bvals), "SirenCompress lossless --max-error": ours(volume, Path(folder), noise)}
            for method, run in methods.items():
                start = time.perf_counter()
                n, decoded, layout = run(data, bound)
                error = int(np.abs(decoded - data).max())
                assert error <= bound, (method, error, bound)
                seconds = time.perf_counter() - start
                print(f"| {label} | {method} | {layout} | {n:,} | {raw / n:.2f} | {error} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
