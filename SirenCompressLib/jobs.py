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
from pathlib import Path

from .codecs import settings_document

PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1
STARTF_USESHOWWINDOW, SW_HIDE = 1, 0  # Windows STARTUPINFO: take wShowWindow, and hide the window


def compress_command(input_path: str | os.PathLike, output_path: str | os.PathLike, codec: str | None,
                     settings: dict, preset: str | None = None, flags: tuple[str, ...] = (),
                     python: str = sys.executable) -> tuple[list[str], str]:
    """The CLI call that compresses `input_path` (replacing the output) and reports in JSON lines, with the
    settings crossing as JSON on its standard input (`--config-json -`). Shared by the Slicer front end and
    `batch`.

    Parameters
    ----------
    input_path, output_path : path
        The image and the .sirz to write.
    codec : str or None
        A key of `codecs.REGISTRY`; None: the codec suggested for the input.
    settings : dict
        Config field name → value (all of a `Config.to_json()`, or some).
    preset : str or None
        A preset of the codec, under the settings.
    flags : tuple of str
        Further `compress` flags (e.g. --target-ratio 20).
    python : str
        The interpreter.

    Returns
    -------
    (list of str, str)
        The command and the JSON for its standard input: `CompressJob(*compress_command(...))`.
    """
    args = [python, "-m", "SirenCompressLib", "compress", str(input_path), "-o", str(output_path),
            "--progress", "jsonl", "--force", "--config-json", "-", *flags]
    return args, settings_document(codec, settings, preset)


class CompressJob:
    """One compression in a child process; `poll()` returns the progress events received since the last call."""

    def __init__(self, command: list[str], stdin: str = "") -> None:
        self.command, self.stdin = command, stdin
        self.process: subprocess.Popen | None = None
        self.cancelled = False
        self.error: str | None = None  # the CLI's one-line error, when it failed
        self.done_event: dict | None = None
        self._events: queue.Queue = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=50)
        self._threads: list[threading.Thread] = []

    def start(self) -> CompressJob:
        """Start the child process and hand it its standard input (the settings JSON)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env, **popen_options())
        try:
            self.process.stdin.write(self.stdin)
            self.process.stdin.close()
        except BrokenPipeError:  # the child ended before reading: its exit code and stderr say why
            pass
        self._threads = [threading.Thread(target=self._read_events, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether the child process has started and not yet ended."""
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The child's exit status: None before it starts and while it runs; negative N if signal N ended it
        (POSIX)."""
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
    """Platform options for the child process: its own session (POSIX), or its own process group and no
    console window (Windows: STARTUPINFO with STARTF_USESHOWWINDOW and SW_HIDE, as Slicer's
    `slicer.util.launchConsoleProcess` does).

    Returns
    -------
    dict
        Keyword arguments for `subprocess.Popen`.
    """
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
