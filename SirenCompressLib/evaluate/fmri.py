"""Fidelity of a decoded fMRI run: what compression changes in a first-level GLM and in functional
connectivity (the fMRI paper's downstream checks), beside PSNR and SSIM.

Definitions:
- Brain mask: a given mask, else the original's mean frame above 20 % of its 99th percentile.
- GLM: nilearn `FirstLevelModel` (SPM HRF, cosine drift model with a 128 s high-pass, no smoothing) fitted
  to each image with the same events and TR; z-map of the contrast `contrast` (default: the first trial
  type). Reported inside the mask: mean |z_decoded − z_original|, their Pearson correlation, and the
  fraction of voxels whose |z| > 3.1 status agrees.
- Connectivity: mean time series of each region of a label image (nilearn `NiftiLabelsMasker`, standardised,
  same high-pass), their Pearson correlation matrix; reported: mean |r_decoded − r_original| over the
  region pairs.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..metrics import compare
from ..volume import Volume4D

Z_THRESHOLD = 3.1
HIGH_PASS = 1 / 128  # Hz
MASK_FRACTION = 0.2  # of the mean frame's 99th percentile


@dataclass
class FmriFidelity:
    """What `fmri_fidelity` measures; None where it was not measured (no events, no labels)."""

    psnr: float
    ssim: float | None
    contrast: str | None
    z_mad: float | None  # mean |Δz| in the mask
    z_correlation: float | None
    z_agreement: float | None  # fraction of mask voxels on the same side of |z| = 3.1
    connectivity_mad: float | None  # mean |Δr| over region pairs
    regions: int  # regions in the label image (0 without one)

    def to_json(self) -> dict:
        """The measures as JSON values.

        Returns
        -------
        dict
            Field name → value; NaN and infinities as None.
        """
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}

    def markdown(self) -> str:
        """The measures as a markdown table.

        Returns
        -------
        str
            A two-column table (measure, value), "n/a" where not measured; no trailing newline.
        """
        def num(v, fmt):
            return "n/a" if v is None else format(v, fmt)

        rows = [("PSNR (dB)", num(self.psnr, ".2f")), ("SSIM", num(self.ssim, ".4f")),
                (f"GLM z-map, contrast {self.contrast}: mean abs difference", num(self.z_mad, ".4f")),
                ("GLM z-map: correlation with the original's", num(self.z_correlation, ".4f")),
                (f"GLM: voxels on the same side of abs(z) = {Z_THRESHOLD}", num(self.z_agreement, ".4f")),
                (f"connectivity ({self.regions} regions): mean abs difference of r", num(self.connectivity_mad, ".4f"))]
        return "| measure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def read_events(path: str | Path) -> list[tuple[float, float, str]]:
    """Read a BIDS events file.

    Parameters
    ----------
    path : str or Path
        A tab-separated file with a header row and the columns onset and duration (seconds) and, optionally,
        trial_type (BIDS specification, "Task events").

    Returns
    -------
    list of tuple
        (onset s, duration s, trial type) per row; the trial type "task" where the column is missing or
        empty.

    Raises
    ------
    InputError
        When the file cannot be read, lacks a column, or holds a value that is not a number.
    """
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        return [(float(r["onset"]), float(r["duration"]), r.get("trial_type") or "task") for r in rows]
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a readable events TSV with onset and duration columns ({exc})") from None


def fmri_fidelity(original: Volume4D, decoded: Volume4D, tr: float,
                  events: list[tuple[float, float, str]] | None = None, labels: np.ndarray | None = None,
                  mask: np.ndarray | None = None, contrast: str | None = None) -> FmriFidelity:
    """What compression changes in an fMRI run: PSNR and SSIM, a first-level GLM, functional connectivity.

    The definitions are in the module docstring (nilearn `FirstLevelModel` with the SPM HRF and a 128 s
    cosine high-pass; `NiftiLabelsMasker` region means; Pearson correlations).

    Parameters
    ----------
    original : Volume4D
        The uncompressed run (x, y, z, time).
    decoded : Volume4D
        The run to score, the same shape.
    tr : float
        The repetition time, seconds.
    events : list of tuple or None
        (onset s, duration s, trial type) of the task (see `read_events`); None or empty: no GLM.
    labels : numpy.ndarray or None
        (x, y, z) integer regions, 0 = none; None: no connectivity.
    mask : numpy.ndarray or None
        (x, y, z) brain mask, non-zero inside; None: the original's mean frame above 20 % of its 99th
        percentile.
    contrast : str or None
        The trial type whose z-map is compared; None: the first event's.

    Returns
    -------
    FmriFidelity
        PSNR (dB) and SSIM over the whole run, and the GLM and connectivity measures where asked.

    Raises
    ------
    InputError
        When the shapes differ, `tr` is not positive, the mask is empty, or `contrast` is not a trial type
        of the events.
    """
    if original.shape != decoded.shape:
        raise InputError(f"shapes differ: {original.shape} vs {decoded.shape}")
    if not tr > 0:
        raise InputError("give the repetition time (--tr, seconds)")
    import nibabel as nib

    whole = compare(original.data, decoded.data).whole
    images = [nib.Nifti1Image(v.data.astype(np.float32), original.ijk_to_ras) for v in (original, decoded)]
    if mask is None:
        mean = original.data.mean(axis=3)
        mask = mean > MASK_FRACTION * np.percentile(mean, 99)
    if not np.any(mask):
        raise InputError("the brain mask is empty")
    mask_img = nib.Nifti1Image(np.asarray(mask).astype(np.uint8), original.ijk_to_ras)
    z_mad = z_corr = agreement = None
    if events:
        contrast = contrast or events[0][2]
        z0, z1 = (_z_map(img, mask_img, tr, events, contrast)[mask > 0] for img in images)
        z_mad = float(np.mean(np.abs(z1 - z0)))
        z_corr = float(np.corrcoef(z0, z1)[0, 1])
        agreement = float(np.mean((np.abs(z0) > Z_THRESHOLD) == (np.abs(z1) > Z_THRESHOLD)))
    connectivity, regions = None, 0
    if labels is not None:
        r0, r1 = (_connectivity(img, labels, original.ijk_to_ras, tr) for img in images)
        regions = r0.shape[0]
        upper = np.triu_indices(regions, 1)
        connectivity = float(np.mean(np.abs(r1[upper] - r0[upper]))) if regions > 1 else None
    return FmriFidelity(whole.psnr, whole.ssim, contrast if events else None, z_mad, z_corr, agreement,
                        connectivity, regions)


def _z_map(image, mask_img, tr: float, events, contrast: str) -> np.ndarray:
    import pandas as pd
    from nilearn.glm.first_level import FirstLevelModel

    table = pd.DataFrame(events, columns=["onset", "duration", "trial_type"])
    if contrast not in set(table.trial_type):
        raise InputError(f"contrast {contrast!r} is not a trial type of the events")
    model = FirstLevelModel(t_r=tr, hrf_model="spm", drift_model="cosine", high_pass=HIGH_PASS,
                            mask_img=mask_img, smoothing_fwhm=None, minimize_memory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(image, events=table)
        return np.asarray(model.compute_contrast(contrast, output_type="z_score").dataobj)


def _connectivity(image, labels: np.ndarray, affine: np.ndarray, tr: float) -> np.ndarray:
    import nibabel as nib
    from nilearn.maskers import NiftiLabelsMasker

    regions = nib.Nifti1Image(np.asarray(labels).astype(np.int16), affine)
    masker = NiftiLabelsMasker(regions, standardize="zscore_sample", high_pass=HIGH_PASS, t_r=tr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        series = masker.fit_transform(image)
    return np.corrcoef(series.T)
