"""A synthetic task fMRI run for tests and benchmarks, with its ground truth: design, regions, labels.

An ellipsoid "brain" with smooth grey/white contrast on a dark background; two task regions whose
signal follows a block design convolved with the canonical (SPM double-gamma) HRF; two pairs of regions
that share slow resting fluctuations (so they are functionally connected); a slow drift; Gaussian noise.
Optionally the first task region is dim (signal dropout, as near the sinuses) with its response intact.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_outputs
from .volume import FrameIndex, Volume4D


@dataclass
class FmriPhantom:
    """A synthetic fMRI run (x, y, z, time) and what it was made of."""

    volume: Volume4D
    tr: float  # seconds between frames
    events: list[tuple[float, float, str]]  # (onset s, duration s, trial type)
    labels: np.ndarray  # (x, y, z) int: 0 outside the regions, 1…6 the regions
    task_regions: tuple[int, ...]  # labels of the regions that respond to the task

    def write_events(self, path: str | Path, force: bool = False) -> Path:
        """Write the events as a BIDS events TSV (columns onset, duration, trial_type; seconds).

        Parameters
        ----------
        path : str or Path
            The file to write (atomically).
        force : bool
            Overwrite an existing file.

        Returns
        -------
        Path
            `path`.

        Raises
        ------
        OutputError
            When the file exists and `force` is False, or cannot be written.
        """
        path = Path(path)
        with atomic_outputs([path], force) as [temp]:
            with open(temp, "w", newline="") as f:
                writer = csv.writer(f, delimiter="\t")
                writer.writerow(["onset", "duration", "trial_type"])
                writer.writerows(self.events)
        return path


def hrf(tr: float, length: float = 32.0) -> np.ndarray:
    """The canonical double-gamma haemodynamic response function, with the parameters of SPM's `spm_hrf`.

    h(t) = Γ(t; 6) − Γ(t; 16) / 6, gamma densities of shape 6 and 16 with unit scale (response peak near
    5 s, undershoot near 15 s; Friston et al. 1998, NeuroImage 7:30), scaled to a peak of 1.

    Parameters
    ----------
    tr : float
        The sampling interval, seconds.
    length : float
        The duration covered, seconds.

    Returns
    -------
    numpy.ndarray
        (ceil(length / tr),) float64, h at t = 0, tr, 2 tr, …
    """
    from scipy.stats import gamma

    t = np.arange(0.0, length, tr)
    h = gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6
    return h / h.max()


def fmri_phantom(shape: tuple[int, int, int] = (32, 32, 8), frames: int = 120, tr: float = 2.0,
                 block: float = 20.0, bold: float = 0.03, noise: float = 0.01, dim: float = 1.0,
                 seed: int = 0) -> FmriPhantom:
    """A synthetic task fMRI run with known activation and connectivity.

    The design starts with `block` seconds of rest, then alternates `block` seconds of task and of rest; it
    is convolved with `hrf`. Regions 1 and 2 respond to the task; regions 3–4 and 5–6 share slow
    fluctuations. 3 mm isotropic voxels, RAS-aligned; values rounded to int16.

    Parameters
    ----------
    shape : tuple of int
        Voxels (x, y, z).
    frames : int
        The number of volumes (time points).
    tr : float
        The repetition time, seconds.
    block : float
        The length of each task and rest block, seconds.
    bold : float
        The task regions' signal change relative to their baseline at the HRF's peak (0.03 = 3 %).
    noise : float
        σ of the Gaussian noise relative to the baseline level 1000.
    dim : float
        Scales the baseline of region 1 (signal dropout when < 1) while its response keeps its size in
        signal units.
    seed : int
        Seeds the noise and the slow fluctuations.

    Returns
    -------
    FmriPhantom
        The run (with a time frame index, seconds), TR, events, region labels and the task regions (1, 2).
    """
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    x, y, z = np.meshgrid(np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), np.linspace(-1, 1, nz), indexing="ij")
    brain = (x / 0.85) ** 2 + (y / 0.8) ** 2 + (z / 1.1) ** 2 < 1
    baseline = np.where(brain, 1000.0 * (0.8 + 0.25 * np.cos(3 * x) * np.cos(2 * y)), 30.0)
    centres = [(-0.45, 0.3), (0.45, 0.3), (-0.4, -0.35), (0.4, -0.35), (0.0, 0.55), (0.0, -0.6)]
    labels = np.zeros(shape, dtype=np.int16)
    for k, (cx, cy) in enumerate(centres, start=1):
        labels[((x - cx) ** 2 + (y - cy) ** 2 < 0.2**2) & brain] = k
    times = np.arange(frames) * tr
    onsets = np.arange(block, frames * tr, 2 * block)
    boxcar = np.zeros(frames)
    for onset in onsets:
        boxcar[(times >= onset) & (times < onset + block)] = 1.0
    task = np.convolve(boxcar, hrf(tr))[:frames]
    signal = np.repeat(baseline[..., None], frames, axis=3)
    for k in (1, 2):  # the task regions
        signal[labels == k] *= 1 + bold * task
    signal[labels == 1] -= (1 - dim) * baseline[labels == 1][:, None]
    for pair in ((3, 4), (5, 6)):  # connected pairs: shared slow fluctuation
        shared = _slow_noise(rng, frames, tr)
        for k in pair:
            signal[labels == k] *= 1 + 0.015 * (0.8 * shared + 0.6 * _slow_noise(rng, frames, tr))
    drift = 1 + 0.01 * np.cos(np.pi * times / times[-1])[None, None, None, :] * (x[..., None] + 1) / 2
    signal = signal * drift + rng.normal(0.0, noise * 1000.0, signal.shape)
    ijk_to_ras = np.diag([3.0, 3.0, 3.0, 1.0])
    volume = Volume4D(np.rint(signal).astype(np.int16), ijk_to_ras,
                      frames=FrameIndex("time", "s", [f"{t:g}" for t in times]))
    events = [(float(onset), float(block), "task") for onset in onsets]
    return FmriPhantom(volume, tr, events, labels, (1, 2))


def _slow_noise(rng: np.random.Generator, frames: int, tr: float, seconds: float = 10.0) -> np.ndarray:
    """Zero-mean, unit-variance noise smoothed over about `seconds`."""
    white = rng.normal(size=frames + 50)
    kernel = np.exp(-0.5 * (np.arange(-25, 26) * tr / seconds) ** 2)
    smooth = np.convolve(white, kernel, mode="same")[25:25 + frames]
    return (smooth - smooth.mean()) / smooth.std()
