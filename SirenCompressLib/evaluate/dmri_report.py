"""The dMRI fidelity report: markdown table laid out as the paper's Table 1, PNG figures, JSON, NIfTI error maps."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from ..atomic import atomic_outputs
from ..errors import OutputError
from .dmri import LABELS, METRICS, TISSUES, Fidelity, Row, Stat

REPORT, JSON, MAPS_PNG, HISTOGRAMS_PNG, TISSUES_NII = \
    "report.md", "fidelity.json", "error_maps.png", "histograms.png", "tissues.nii.gz"
MAP_NAMES = METRICS + ("angle",)


def map_files(row: Row) -> dict[str, str]:
    """The error-map file names of a row.

    Parameters
    ----------
    row : Row
        A row of a `Fidelity`; its name, lower-cased with runs of other characters than a–z and 0–9 as "-",
        makes the file names' stem.

    Returns
    -------
    dict of str to str
        Metric (and "angle") → `<stem>_<metric>.nii.gz`.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", row.name.lower()).strip("-") or "row"
    return {m: f"{slug}_{m}.nii.gz" for m in MAP_NAMES}


def write_fidelity_report(result: Fidelity, folder: str | os.PathLike, force: bool = False) -> list[Path]:
    """Write the dMRI fidelity report into a folder, all files or none.

    report.md (`markdown`), fidelity.json (`Fidelity.to_json` and the file names), error_maps.png
    (`plot_maps`), histograms.png (`plot_histograms`), tissues.nii.gz (the labels) and one NIfTI per row and
    metric (signed relative error in %, angle in degrees; 0 outside the brain; float32), named by `map_files`.

    Parameters
    ----------
    result : Fidelity
        What `dmri_fidelity` returned.
    folder : str or os.PathLike
        The folder, created if missing.
    force : bool
        Replace files that exist.

    Returns
    -------
    list of Path
        The paths written.

    Raises
    ------
    OutputError
        When the folder cannot be created, a file exists and `force` is False, or a file cannot be written.
    """
    import nibabel as nib

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the report folder {folder}: {exc.strerror or exc}") from None
    maps = [(row, metric, name) for row in result.rows for metric, name in map_files(row).items()]
    names = [REPORT, JSON, MAPS_PNG, HISTOGRAMS_PNG, TISSUES_NII] + [name for _, _, name in maps]
    paths = [folder / name for name in names]
    with atomic_outputs(paths, force) as temps:
        temps[0].write_text(markdown(result))
        document = {**result.to_json(), "files": {"report": REPORT, "figures": [MAPS_PNG, HISTOGRAMS_PNG],
                                                  "tissues": TISSUES_NII,
                                                  "maps": {row.name: map_files(row) for row in result.rows}}}
        temps[1].write_text(json.dumps(document, indent=1, ensure_ascii=False))
        plot_maps(result, temps[2])
        plot_histograms(result, temps[3])
        nib.save(nib.Nifti1Image(result.tissues, result.ijk_to_ras), temps[4])
        for (row, metric, _), temp in zip(maps, temps[5:]):
            nib.save(nib.Nifti1Image(row.maps[metric].astype(np.float32), result.ijk_to_ras), temp)
    return paths


def markdown(result: Fidelity) -> str:
    """The report as markdown.

    The settings, the table of signed relative errors per metric, method and tissue (laid out as Table 1 of
    the SIREN dMRI compression paper: pre-processing references first, then compressions), the mean absolute
    errors with the WM angular error, and (when MP-PCA was scored) the decoded image against MP-PCA in white
    matter.

    Parameters
    ----------
    result : Fidelity
        What `dmri_fidelity` returned.

    Returns
    -------
    str
        The markdown text, ending in a newline.
    """
    s = result.settings
    lines = ["# dMRI fidelity", "",
             f"- Image: {'×'.join(map(str, s['shape']))}; DTI on b ≈ {s['dti_shell_b']:.0f} s/mm² "
             f"({s['dti_volumes']} directions + {s['b0_volumes']} b=0), SH order {s['sh_order']} on b ≈ "
             f"{s['sh_shell_b']:.0f} s/mm² ({s['sh_volumes']} directions), b-value tolerance ± {s['b_tolerance']:g}.",
             f"- Brain mask: {s['mask']}. Tissues: {s['tissues']}. Voxels: " +
             ", ".join(f"{t} {int((result.tissues == LABELS[t]).sum())}" for t in TISSUES) + "."]
    if s["ratio_raw16"]:
        lines.append(f"- Archive: {s['archive_bytes']:,} bytes, compression ratio {s['ratio_raw16']:.2f} (raw 16-bit).")
    lines += [f"- {note}." for note in s["notes"]]
    lines += ["", "Relative error, mean (± std) over the tissue's voxels, signed: 100·(x − x_original) / x_original.",
              "", "| metric | | method | " + " | ".join(TISSUES) + " |", "|---|---|---|" + "---|" * len(TISSUES)]
    for metric in METRICS:
        for row in _paper_order(result.rows):
            cells = [_signed(row.errors[metric][t]) for t in TISSUES]
            lines.append(f"| {metric} | {row.kind} | {row.name} | " + " | ".join(cells) + " |")
    lines += ["", "Mean absolute relative error (%):", "",
              "| method | " + " | ".join(f"{m} {t}" for m in METRICS for t in TISSUES) + " | angle WM (°) |",
              "|---|" + "---|" * (len(METRICS) * len(TISSUES) + 1)]
    for row in _paper_order(result.rows):
        cells = [_number(row.errors[m][t].mean_abs) for m in METRICS for t in TISSUES]
        lines.append(f"| {row.name} | " + " | ".join(cells) + f" | {_angle(row.angle)} |")
    mppca = next((r for r in result.rows if r.name == "MP-PCA"), None)
    if mppca is not None:
        decoded = result.rows[0]
        pairs = [(m, decoded.errors[m]["WM"].mean_abs, mppca.errors[m]["WM"].mean_abs) for m in METRICS]
        within = [m for m, ours, theirs in pairs if ours <= theirs]
        lines += ["", f"White matter, mean absolute relative error, {decoded.name} vs MP-PCA: " +
                  ", ".join(f"{m} {ours:.2f} % vs {theirs:.2f} %" for m, ours, theirs in pairs) +
                  f"; no larger than MP-PCA's change for: {', '.join(within) or 'none'}."]
    notes = [f"{r.name}: {r.note}" for r in result.rows if r.note]
    if notes:
        lines += ["", "Settings of the rows: " + "; ".join(notes) + "."]
    lines += ["", f"Figures: [{MAPS_PNG}]({MAPS_PNG}) (central slice), [{HISTOGRAMS_PNG}]({HISTOGRAMS_PNG}) (WM). "
                  f"Error maps: one NIfTI per method and metric, listed in {JSON}; tissues in {TISSUES_NII}."]
    return "\n".join(lines) + "\n"


def plot_maps(result: Fidelity, path: str | os.PathLike) -> None:
    """Plot the error maps of the central axial slice: one row per method, one column per metric and the angle.

    Colour scales are shared per column: ± the 95th percentile of |error| over the labelled tissues and all
    methods (0 to it for angles).

    Parameters
    ----------
    result : Fidelity
        What `dmri_fidelity` returned.
    path : str or os.PathLike
        The PNG to write (80 dpi).
    """
    plt = _pyplot()
    z = result.tissues.shape[2] // 2
    fig, axes = plt.subplots(len(result.rows), len(MAP_NAMES), figsize=(2.6 * len(MAP_NAMES), 2.2 * len(result.rows)),
                             squeeze=False, layout="constrained")
    for col, metric in enumerate(MAP_NAMES):
        values = np.concatenate([np.abs(r.maps[metric][result.tissues > 0]) for r in result.rows])
        top = max(float(np.percentile(values, 95)), 1e-6) if values.size else 1.0
        for row_index, row in enumerate(result.rows):
            ax = axes[row_index, col]
            image = np.rot90(row.maps[metric][:, :, z])
            if metric == "angle":
                shown = ax.imshow(image, cmap="magma", vmin=0, vmax=top)
            else:
                shown = ax.imshow(image, cmap="RdBu_r", vmin=-top, vmax=top)
            ax.set_xticks([])
            ax.set_yticks([])
            if row_index == 0:
                ax.set_title(f"{metric} ({'°' if metric == 'angle' else '%'})", fontsize=9)
            if col == 0:
                ax.set_ylabel(row.name, fontsize=8)
        fig.colorbar(shown, ax=axes[:, col], fraction=0.05, pad=0.02).ax.tick_params(labelsize=6)
    fig.savefig(path, dpi=80, format="png")
    plt.close(fig)


def plot_histograms(result: Fidelity, path: str | os.PathLike) -> None:
    """Plot histograms of the signed relative errors (and angles) over white matter, one line per method.

    Each panel spans ± the 99th percentile of |error| over the methods (0 to it for angles), 40 bins;
    values outside fall in the end bins.

    Parameters
    ----------
    result : Fidelity
        What `dmri_fidelity` returned.
    path : str or os.PathLike
        The PNG to write (100 dpi).
    """
    plt = _pyplot()
    wm = result.tissues == LABELS["WM"]
    fig, axes = plt.subplots(1, len(MAP_NAMES), figsize=(3.2 * len(MAP_NAMES), 3))
    for ax, metric in zip(axes, MAP_NAMES):
        samples = [row.maps[metric][wm] for row in result.rows]
        joined = np.concatenate(samples) if wm.any() else np.zeros(1)
        top = max(float(np.percentile(np.abs(joined), 99)), 1e-6)
        bins = np.linspace(0 if metric == "angle" else -top, top, 41)
        for row, sample in zip(result.rows, samples):
            ax.hist(np.clip(sample, bins[0], bins[-1]), bins=bins, histtype="step", label=row.name)
        ax.set_xlabel("degrees" if metric == "angle" else "relative error (%)", fontsize=8)
        ax.set_title(f"{metric}, WM", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _paper_order(rows: list[Row]) -> list[Row]:
    """Pre-processing references first, then the compressions, as in the paper's tables."""
    return [r for r in rows if r.kind == "pre-processing"] + [r for r in rows if r.kind == "compression"]


def _signed(s: Stat) -> str:
    return "n/a" if s.voxels == 0 else f"{s.mean:.2f} % (± {s.std:.2f} %)"


def _number(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def _angle(s: Stat) -> str:
    return "n/a" if s.voxels == 0 else f"{s.mean:.2f} ± {s.std:.2f}"
