"""Rate–distortion benchmark: the registry's codecs and classical codecs at the same compression ratios,
with the noise bound (`SirenCompressLib.noise`).

Every codec sees the same integer data (float input is rounded to int16 first, and the report says so);
the compression ratio counts every byte a decoder needs (raw 16-bit bytes / coded bytes).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..archive import to_bytes
from ..codecs import JsonSettings
from ..metrics import compare
from ..noise import NoiseBound, snr_loss
from ..pipeline import compress, decompress
from ..rate import config_for_ratio
from ..volume import Volume4D
from .classical import Coded, hevc_at_size, images_at_size, klt_at_size

CLASSICAL = {
    "JPEG 2000 tiled": lambda d, t: images_at_size(d, t, "JPEG 2000", "tiled"),
    "JPEG 2000 per-image": lambda d, t: images_at_size(d, t, "JPEG 2000", "per-image"),
    "HTJ2K tiled": lambda d, t: images_at_size(d, t, "HTJ2K", "tiled"),
    "JPEG XL tiled": lambda d, t: images_at_size(d, t, "JPEG XL", "tiled"),
    "JPEG XL per-image": lambda d, t: images_at_size(d, t, "JPEG XL", "per-image"),
    "KLT + JPEG 2000": lambda d, t: klt_at_size(d, t),
    "HEVC 12-bit": hevc_at_size,
}


@dataclass
class Row:
    codec: str
    target_ratio: float
    bytes: int
    ratio: float
    psnr: float
    ssim: float | None
    psnr_clean: float | None  # against the noise-free phantom, when there is one
    encode_s: float
    decode_s: float | None
    settings: str = ""


def integer_volume(volume: Volume4D) -> tuple[Volume4D, bool]:
    """The volume with integer voxels (float data rounded to int16); True if it was rounded.

    Parameters
    ----------
    volume : Volume4D

    Returns
    -------
    Volume4D
        `volume` itself when its data are integer; else a copy with the voxels rounded and clipped to the
        int16 range (affine, gradients and frames kept).
    bool
        Whether the data were rounded.
    """
    if volume.data.dtype.kind in "iu":
        return volume, False
    data = np.clip(np.rint(volume.data), -32768, 32767).astype(np.int16)
    return Volume4D(data, volume.ijk_to_ras, volume.gradients, frames=volume.frames), True


def run(volume: Volume4D, ratios: list[float], codecs: dict[str, tuple[str, JsonSettings]], classical: list[str],
        clean: np.ndarray | None = None, log: Callable[[str], None] = print) -> list[Row]:
    """Every codec at every ratio.

    Parameters
    ----------
    volume : Volume4D
        Integer data (see `integer_volume`).
    ratios : list of float
        Target compression ratios.
    codecs : dict
        Row name → (registry codec, its settings); each codec must support a target ratio.
    classical : list of str
        Keys of `CLASSICAL`.
    clean : ndarray or None
        The noise-free data, when known (a phantom's).
    log : callable
        Receives one line per row.

    Returns
    -------
    list of Row
        Per ratio, the registry codecs' rows, then the classical ones.
    """
    data = volume.data
    raw = data.size * 2
    rows = []
    for ratio in ratios:
        for name, (codec, base) in codecs.items():
            config = config_for_ratio(base, volume, ratio, codec)
            start = time.perf_counter()
            archive = compress(volume, codec, config, noise=False)  # the codec alone; bench estimates σ once
            encode_s = time.perf_counter() - start
            start = time.perf_counter()
            decoded = decompress(archive).data
            decode_s = time.perf_counter() - start
            rows.append(_row(name, ratio, len(to_bytes(archive)), raw, data, decoded, clean, encode_s, decode_s,
                             config.summary()))
            log(_line(rows[-1]))
        for name in classical:
            start = time.perf_counter()
            coded: Coded = CLASSICAL[name](data, int(raw / ratio))
            encode_s = time.perf_counter() - start  # includes the size search
            rows.append(_row(name, ratio, coded.nbytes, raw, data, coded.decoded, clean, encode_s, None,
                             coded.name))
            log(_line(rows[-1]))
    return rows


def markdown(rows: list[Row], clean: bool, bound: NoiseBound | None = None) -> str:
    """The table, one block of rows per target ratio, best PSNR in bold, the noise bound last.

    With a bound, each row also gives its distance below the bound at its compression ratio (dB) and the SNR
    it costs (`versus_noise`); the bound's row, the least SNR loss at that ratio (its distortion σ²·2^(−2R)).

    Parameters
    ----------
    rows : list of Row
    clean : bool
        Whether the rows have a PSNR against noise-free data.
    bound : NoiseBound or None
        The noise bound, a row per ratio.

    Returns
    -------
    str
    """
    head = "| target CR | codec | CR | PSNR dB | SSIM |" + (" PSNR vs noise-free dB |" if clean else "") \
        + (" below the bound dB | SNR loss % |" if bound else "") + " encode s | decode s | settings |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for ratio in sorted({r.target_ratio for r in rows}):
        group = [r for r in rows if r.target_ratio == ratio]
        best = max(r.psnr for r in group)
        for r in group:
            psnr = f"**{r.psnr:.2f}**" if r.psnr == best else f"{r.psnr:.2f}"
            cells = [f"{ratio:g}", r.codec, f"{r.ratio:.2f}", psnr, "n/a" if r.ssim is None else f"{r.ssim:.4f}"]
            if clean:
                cells.append(f"{r.psnr_clean:.2f}")
            if bound is not None:
                cells += [f"{value:.2f}" for value in versus_noise(r, bound)]
            cells += [f"{r.encode_s:.1f}", "" if r.decode_s is None else f"{r.decode_s:.2f}", r.settings]
            lines.append("| " + " | ".join(cells) + " |")
        if bound is not None:
            cells = [f"{ratio:g}", "noise bound", f"{ratio:g}", f"{bound.psnr(ratio):.2f}", ""] + [""] * clean \
                + ["0.00", f"{snr_loss(bound.sigma**2 * 2 ** (-32 / ratio), bound.sigma):.2f}"] \
                + ["", "", f"white Gaussian noise σ = {bound.sigma:.3g} (noise PSNR {bound.noise_psnr:.2f} dB) "
                           f"at {16 / ratio:.3g} bits per voxel"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[Row], path: str, title: str, bound: NoiseBound | None = None) -> None:
    """PSNR against compression ratio, one line per codec (PNG): the registry's codecs solid, classical
    codecs dashed with markers, the noise bound dashed in black and the noise floor (the noise's own PSNR)
    dotted in grey.

    Parameters
    ----------
    rows : list of Row
    path : str
        The PNG to write.
    title : str
    bound : NoiseBound or None
        The noise bound to draw.
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for codec in dict.fromkeys(r.codec for r in rows):
        points = sorted((r.ratio, r.psnr) for r in rows if r.codec == codec)
        ax.plot(*zip(*points), marker="o", linestyle="--" if codec in CLASSICAL else "-", label=codec)
    if bound is not None:
        ratios = np.geomspace(min(r.ratio for r in rows), max(r.ratio for r in rows), 50)
        ax.plot(ratios, [bound.psnr(r) for r in ratios], "k--", label=f"noise bound (σ = {bound.sigma:.3g})")
        ax.axhline(bound.noise_psnr, color="grey", linestyle=":",
                   label=f"noise floor ({bound.noise_psnr:.1f} dB, SNR loss 29 % there)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(sorted({round(r.target_ratio) for r in rows}))
    ax.set_xlabel("compression ratio (raw 16-bit / coded bytes)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=8, wrap=True)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def to_json(rows: list[Row], path: str, bound: NoiseBound | None = None, **context) -> None:
    """The rows and `context` (JSON values: data, machine, the noise σ, ...) as a JSON object.

    Parameters
    ----------
    rows : list of Row
    path : str
        The file to write.
    bound : NoiseBound or None
        With a bound, each row also has `below_bound_db` and `snr_loss_percent` (`versus_noise`).
    **context
        More top-level keys.
    """
    def row(r: Row) -> dict:
        if bound is None:
            return asdict(r)
        below, loss = versus_noise(r, bound)
        return {**asdict(r), "below_bound_db": below, "snr_loss_percent": loss}

    with open(path, "w") as f:
        json.dump({**context, "rows": [row(r) for r in rows]}, f, indent=1)


def versus_noise(row: Row, bound: NoiseBound) -> tuple[float, float]:
    """How far a row is below the noise bound at its compression ratio, and the SNR its error costs.

    Parameters
    ----------
    row : Row
    bound : NoiseBound
        Of the data's noise (`SirenCompressLib.noise.estimate_noise`).

    Returns
    -------
    below_db : float
        The bound's PSNR at the row's measured ratio minus the row's PSNR (negative where a codec passes the
        bound: possible where the noise is not white and Gaussian everywhere, e.g. a background of less noise).
    snr_loss : float
        `SirenCompressLib.noise.snr_loss` of the row's MSE, in per cent.
    """
    mse = 0.0 if math.isinf(row.psnr) else 10 ** (-row.psnr / 10)  # scaled by the range, as `metrics`
    return bound.psnr(row.ratio) - row.psnr, snr_loss(mse, bound.sigma, bound.data_range)


def _row(codec, ratio, nbytes, raw, data, decoded, clean, encode_s, decode_s, settings) -> Row:
    m = compare(data, decoded).whole
    psnr_clean = None if clean is None else compare(clean, decoded).whole.psnr
    return Row(codec, ratio, nbytes, raw / nbytes, m.psnr, m.ssim, psnr_clean, encode_s, decode_s, settings)


def _line(r: Row) -> str:
    psnr = "inf" if math.isinf(r.psnr) else f"{r.psnr:.2f}"
    return f"CR {r.target_ratio:g}: {r.codec}: {r.bytes:,} bytes, CR {r.ratio:.2f}, PSNR {psnr} dB ({r.encode_s:.0f} s)"
