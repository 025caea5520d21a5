"""A worker process started from Blender ("Start local worker"), stopped on unregister or exit.

``multiprocessing`` cannot spawn from an extension (its children cannot import ``bl_ext``), so the
worker runs as a plain subprocess of the configured command line.
"""

from __future__ import annotations

import atexit
import shlex
import subprocess
import sys

DEFAULT_COMMAND = "animus3d worker --bind tcp://127.0.0.1:5555"

_process: subprocess.Popen | None = None


class WorkerStartError(RuntimeError):
    """The worker command could not be started."""


def split_command(command: str) -> list[str]:
    parts = shlex.split(command, posix=sys.platform != "win32")
    if not parts:
        raise WorkerStartError("the worker command is empty; set it in the add-on preferences")
    return parts


def bind_address(command: str) -> str | None:
    """The ``--bind`` address of a worker command line, as a client would connect to it."""
    parts = split_command(command)
    for i, part in enumerate(parts):
        if part == "--bind" and i + 1 < len(parts):
            return parts[i + 1].replace("tcp://*:", "tcp://127.0.0.1:").replace("tcp://0.0.0.0:", "tcp://127.0.0.1:")
        if part.startswith("--bind="):
            return part.split("=", 1)[1]
    return None


def start(command: str) -> subprocess.Popen:
    """Start the worker (once); returns the running process."""
    global _process
    if running():
        return _process
    try:
        _process = subprocess.Popen(split_command(command), stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise WorkerStartError(f"cannot start the worker ({exc.strerror or exc}): {command}") from exc
    return _process


def running() -> bool:
    return _process is not None and _process.poll() is None


def pid() -> int | None:
    return _process.pid if running() else None


def stop(timeout_s: float = 3.0) -> None:
    """Terminate the worker we started (kill it if it does not exit in time)."""
    global _process
    proc, _process = _process, None
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


atexit.register(stop)
