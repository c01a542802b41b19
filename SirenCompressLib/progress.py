"""Progress display for the CLI: a one-line bar for people, or one JSON object per line for front ends."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import TextIO


def slice_coded(event: dict) -> str:
    """What a "slice" event says was stored: "KIND, B bytes", or "KIND, in slice N's member" for a slice that
    shares an earlier slice's member (`member_of`, 0-based; a slab's later slices)."""
    shared = event.get("member_of")
    stored = f"in slice {shared + 1}'s member" if shared is not None else f"{event['bytes']} bytes"
    return f"{event['kind']}, {stored}"


class JsonLines:
    """Writes each event as one JSON line (NaN/Inf become null) and flushes at once."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream

    def __call__(self, event: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in event.items()}
        self.stream.write(json.dumps(clean) + "\n")
        self.stream.flush()


class Bar:
    """A progress bar on a terminal (redrawn at most 5 times a second); elsewhere a line per slice."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 24) -> None:
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self.last_draw = 0.0
        self.networks = self.done = 0

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self.networks = event["networks"]
            if not self.networks:
                self._line(f"coding {event['slices']} slices")
                return
            self._line(f"training {event['networks']} of {event['slices']} slices, "
                       f"{event['epochs']} epochs each, on {event['device']}")
        elif kind == "epoch" and self.tty and time.monotonic() - self.last_draw > 0.2:
            self.last_draw = time.monotonic()
            batch = event.get("batch_size", 1)
            frac = (self.done + batch * event["epoch"] / event["epochs"]) / max(self.networks, 1)
            filled = int(frac * self.width)
            first = event["slice"] + 1
            where = f"slice {first}" if batch == 1 else f"slices {first}-{first + batch - 1}"
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (self.width - filled)}] {where}/{event['slices']}"
                f" epoch {event['epoch']}/{event['epochs']} PSNR {event['psnr']:.1f} dB"
                f" {_eta(event['eta_s'])}   ")
            self.stream.flush()
        elif kind == "slice":
            self.done += event["kind"] == "network"
            self._line(f"slice {event['slice'] + 1}/{event['slices']}: {slice_coded(event)}")

    def _line(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s left" if minutes else f"{secs}s left"


class Clock:
    """Estimates the time left from the epochs done so far."""

    def __init__(self, total_epochs: int) -> None:
        self.total, self.done, self.start = total_epochs, 0, time.monotonic()

    def update(self, done_epochs: int) -> None:
        """Record the epochs done so far."""
        self.done = done_epochs

    def eta(self) -> float:
        """Seconds left at the pace so far (NaN before the first epoch)."""
        if self.done == 0:
            return float("nan")
        return (time.monotonic() - self.start) / self.done * (self.total - self.done)
