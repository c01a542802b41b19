"""fMRI codecs side by side at about the same compression ratios: the fmri codec, the siren codec with time
as its volume axis, JPEG 2000 per frame, KLT + JPEG 2000, and H.264 / H.265 (ffmpeg from the imageio-ffmpeg
wheel; each axial slice a 12-bit (H.265) or 10-bit (H.264) grey video over time), on the fMRI phantom.
Scores: PSNR and SSIM, and the downstream checks of `evaluate --fmri` (GLM z-map against the original's,
connectivity of the phantom's six regions).

    python benchmarks/fmri_rd.py [--ratios 30 100] [--epochs 1500] [--siren-epochs 600] [--only CODEC ...]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from SirenCompressLib.archive import to_bytes
from SirenCompressLib.codecs import fmri, siren
from SirenCompressLib.errors import InputError
from SirenCompressLib.evaluate import classical
from SirenCompressLib.evaluate.fmri import fmri_fidelity
from SirenCompressLib.fmri_phantom import fmri_phantom
from SirenCompressLib.pipeline import compress, decompress
from SirenCompressLib.rate import config_for_ratio
from SirenCompressLib.volume import Volume4D


def fmri_at_ratio(volume: Volume4D, ratio: float, epochs: int, components: int) -> tuple[np.ndarray, int, str]:
    """The fmri codec with the units its rate control picks for the ratio (as `--target-ratio`)."""
    base = fmri.Config(components=components, epochs=epochs, qat_epochs=epochs // 5, device="cpu")
    config = config_for_ratio(base, volume, ratio, "fmri")
    archive = compress(volume, "fmri", config)
    return decompress(archive).data, len(to_bytes(archive)), f"3×{config.units}, K {components}"


def siren_at_ratio(volume: Volume4D, ratio: float, epochs: int) -> tuple[np.ndarray, int, str]:
    base = siren.Config(**{**siren.PRESETS["compact"].to_json(), "epochs": epochs, "qat_epochs": epochs // 5,
                           "device": "cpu"})
    try:
        config = config_for_ratio(base, volume, ratio, "siren")
    except InputError:  # out of reach at 8 bits: try 6
        config = config_for_ratio(siren.Config(**{**base.to_json(), "weight_bits": 6}), volume, ratio, "siren")
    archive = compress(volume, "siren", config)
    return decompress(archive).data, len(to_bytes(archive)), f"compact 3×{config.units}, {config.weight_bits}-bit"


def video_at_size(data: np.ndarray, target: int, encoder: str) -> tuple[np.ndarray, int, str]:
    """Each axial slice as a grey video over time, CRF bisected to the target size."""
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    bits, pix = (12, "gray12le") if encoder == "libx265" else (10, "gray10le")
    lo_value, hi_value = float(data.min()), float(data.max())
    scale = (2**bits - 1) / max(hi_value - lo_value, 1.0)
    frames = np.rint((data - lo_value) * scale).astype(np.uint16)
    nx, ny, nz, nt = data.shape

    def code(crf: int) -> tuple[np.ndarray, int]:
        out, total = np.empty(data.shape), 0
        with tempfile.TemporaryDirectory() as folder:
            for z in range(nz):
                raw = np.ascontiguousarray(frames[:, :, z].transpose(2, 1, 0))  # (t, y, x)
                video = Path(folder) / f"{z}.{'hevc' if encoder == 'libx265' else 'h264'}"  # elementary stream
                params = ["-x265-params", "log-level=error:info=0"] if encoder == "libx265" else []
                subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", pix, "-s",
                                f"{nx}x{ny}", "-r", "1", "-i", "-", "-c:v", encoder, "-crf", str(crf), "-preset",
                                "slow", "-pix_fmt", pix, *params, str(video)], input=raw.tobytes(), check=True)
                total += video.stat().st_size
                back = subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(video), "-f", "rawvideo",
                                       "-pix_fmt", pix, "-"], capture_output=True, check=True).stdout
                out[:, :, z] = np.frombuffer(back, dtype=np.uint16).reshape(nt, ny, nx).transpose(2, 1, 0)
        return out / scale + lo_value, total

    top = 51 if encoder == "libx265" else 63  # x264's CRF range at 10 bits
    lo, hi, best = 0, top, None
    while lo <= hi:
        crf = (lo + hi) // 2
        decoded, size = code(crf)
        if size <= target:
            best, hi = (decoded, size, crf), crf - 1
        else:
            lo = crf + 1
    if best is None:  # even the coarsest setting is above the target: report it as it is
        decoded, size = code(top)
        best = (decoded, size, top)
    decoded, size, crf = best
    return np.clip(np.rint(decoded), data.min(), data.max()).astype(data.dtype), size, f"CRF {crf}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[30.0, 100.0])
    parser.add_argument("--epochs", type=int, default=1500, help="fmri codec training epochs")
    parser.add_argument("--components", type=int, default=20, help="fmri codec activation patterns K")
    parser.add_argument("--siren-epochs", type=int, default=600)
    parser.add_argument("--only", nargs="+", metavar="CODEC", help="run only these rows (names as in the table)")
    args = parser.parse_args()
    phantom = fmri_phantom()
    volume, data = phantom.volume, phantom.volume.data
    raw = data.size * 2
    print(f"fMRI phantom {'×'.join(map(str, data.shape))} int16 (TR {phantom.tr:g} s, block design, 6 regions, "
          f"noise σ 1 %), raw {raw:,} bytes\n")
    print("| target CR | codec | setting | CR | PSNR dB | SSIM | z-map r | z-map MAD | connectivity MAD | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for ratio in args.ratios:
        target = int(raw / ratio)
        runs = {
            "fmri": lambda: fmri_at_ratio(volume, ratio, args.epochs, args.components),
            "siren (time as volumes)": lambda: siren_at_ratio(volume, ratio, args.siren_epochs),
            "JPEG 2000 per frame": lambda: _coded(classical.images_at_size(data, target, "JPEG 2000", "per-image")),
            "JPEG 2000 tiled": lambda: _coded(classical.images_at_size(data, target, "JPEG 2000", "tiled")),
            "KLT + JPEG 2000": lambda: _coded(classical.klt_at_size(data, target)),
            "H.264 (x264, 10-bit)": lambda: video_at_size(data, target, "libx264"),
            "H.265 (x265, 12-bit)": lambda: video_at_size(data, target, "libx265"),
        }
        for name, run in runs.items():
            if args.only and name not in args.only:
                continue
            start = time.perf_counter()
            try:
                decoded, nbytes, setting = run()
            except InputError as exc:
                print(f"| {ratio:g} | {name} | cannot reach the target: {exc} | | | | | | | |", flush=True)
                continue
            seconds = time.perf_counter() - start
            if nbytes > 1.1 * target:
                print(f"| {ratio:g} | {name} | cannot reach the target: at its smallest CR {raw / nbytes:.1f} "
                      "| | | | | | | |", flush=True)
                continue
            f = fmri_fidelity(volume, Volume4D(decoded, volume.ijk_to_ras), phantom.tr, phantom.events,
                              phantom.labels)
            print(f"| {ratio:g} | {name} | {setting} | {raw / nbytes:.1f} | {f.psnr:.2f} | {f.ssim:.4f} | "
                  f"{f.z_correlation:.4f} | {f.z_mad:.3f} | {f.connectivity_mad:.4f} | {seconds:.0f} |", flush=True)


def _coded(coded: classical.Coded | None) -> tuple[np.ndarray, int, str]:
    if coded is None:
        raise InputError("no setting reaches it")
    return coded.decoded, coded.nbytes, "" if coded.parameter is None else f"parameter {coded.parameter:.3g}"


if __name__ == "__main__":
    main()
