"""Run `sirencompress compress … --progress jsonl` in a child process, for front ends such as Slicer.

Nothing here needs Qt: reader threads only fill a queue, and `poll()` hands the events over on the
caller's thread (a QTimer in Slicer, a loop in `wait()`). Cancel ends the whole process tree, and the
CLI's atomic writing means a cancelled or failed run leaves no output file.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .codecs import fmri, lossless
from .codecs.siren import Config

PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1
STARTF_USESHOWWINDOW, SW_HIDE = 1, 0  # Windows STARTUPINFO: take wShowWindow, and hide the window


def compress_command(input_path: str | os.PathLike, output_path: str | os.PathLike,
                     config: Config | lossless.Config | fmri.Config, python: str = sys.executable) -> list[str]:
    """The CLI call that compresses `input_path` with `config` (replacing the output) and reports in JSON
    lines; the type of `config` says the codec (siren for the siren codec's)."""
    codec = {lossless.Config: "lossless", fmri.Config: "fmri"}.get(type(config), "siren")
    args = [python, "-m", "SirenCompressLib", "compress", str(input_path), "-o", str(output_path),
            "--progress", "jsonl", "--force", "--codec", codec]
    for name, value in asdict(config).items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            args += [flag] if value else []
        elif name != "check_every" and value is not None:
            args += [flag, str(value)]
    return args


class CompressJob:
    """One compression in a child process; `poll()` returns the progress events received since the last call."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.process: subprocess.Popen | None = None
        self.cancelled = False
        self.error: str | None = None  # the CLI's one-line error, when it failed
        self.done_event: dict | None = None
        self._events: queue.Queue = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=50)
        self._threads: list[threading.Thread] = []

    def start(self) -> CompressJob:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env, **popen_options())
        self._threads = [threading.Thread(target=self._read_events, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def poll(self) -> list[dict]:
        """Events received so far and not yet returned (call from the thread that owns the GUI)."""
        events = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event.get("event") == "error":
                self.error = event["message"]
            elif event.get("event") == "done":
                self.done_event = event
            events.append(event)
        return events

    def wait(self, on_event: Callable[[dict], None] | None = None, interval: float = 0.1) -> int:
        """Block until the child ends, passing every event to `on_event`; returns its exit code."""
        while self.running:
            for event in self.poll():
                if on_event:
                    on_event(event)
            time.sleep(interval)
        for thread in self._threads:
            thread.join()
        for event in self.poll():
            if on_event:
                on_event(event)
        if self.returncode != 0 and self.error is None and not self.cancelled:
            self.error = (list(self._stderr) or [f"the compression process exited with code {self.returncode}"])[-1]
        return self.returncode

    def cancel(self, grace: float = 5.0) -> None:
        """Stop the child and everything it started; SIGTERM first so it can clean up, then SIGKILL."""
        if not self.running:
            return
        self.cancelled = True
        if os.name == "posix":
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        else:
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.process.pid)], capture_output=True)
        self.process.wait()

    def _read_events(self) -> None:
        for line in self.process.stdout:
            try:
                self._events.put(json.loads(line))
            except json.JSONDecodeError:
                self._stderr.append(line.rstrip())

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self._stderr.append(line.rstrip())


def popen_options() -> dict:
    """Platform options for the child: its own session (POSIX), or its own process group and no console
    window (Windows: STARTUPINFO with STARTF_USESHOWWINDOW and SW_HIDE, as Slicer's
    `slicer.util.launchConsoleProcess` does)."""
    if os.name == "posix":
        return {"start_new_session": True, "preexec_fn": _die_with_parent}
    startup = subprocess.STARTUPINFO()
    startup.dwFlags |= STARTF_USESHOWWINDOW
    startup.wShowWindow = SW_HIDE
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP, "startupinfo": startup}


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when the parent dies, so an orphan never runs on."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
