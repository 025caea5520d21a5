"""A worker process started from Blender ("Start local worker") and owned by the add-on.

``multiprocessing`` cannot spawn from an extension (its children cannot import ``bl_ext``), so the
worker runs as a plain subprocess of the configured command line. Nothing here waits on it:

- ``start`` refuses a port something already listens on (a worker Blender did not stop, or any other
  program), so the add-on never talks to a process it did not start; the worker's output goes to a
  log file in the add-on's state folder;
- ``stop`` asks the worker to end (SIGTERM) and returns; ``reap``, called from the add-on's tick,
  kills it once the grace period has passed, and says when a started worker ended on its own;
- a pid file in the state folder names the running worker, so a start after a Blender crash finds the
  orphan and stops it (only when its command line is verifiably the one recorded).

This module does not import ``bpy``: the operators give it the state folder.
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_COMMAND = "animus3d worker --bind tcp://127.0.0.1:5555"
STOP_GRACE_S = 3.0  # SIGTERM, then SIGKILL after this long (the worker drains within its own grace)
PID_FILE = "worker.json"
LOG_FILE = "worker.log"
LOG_TAIL_LINES = 5


class WorkerStartError(RuntimeError):
    """The worker command could not be started."""


@dataclass
class _Started:
    process: subprocess.Popen
    log_path: Path
    pid_path: Path
    stop_deadline: float | None = None  # monotonic time of the SIGKILL after a stop request
    reported: bool = False  # its own exit was reported once


_worker: _Started | None = None


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


def _host_port(address: str) -> tuple[str, int] | None:
    if not address.startswith("tcp://"):
        return None
    host, _, port = address[len("tcp://"):].rpartition(":")
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        return None


def port_in_use(address: str) -> bool:
    """Whether a TCP listener holds the address's port (False for addresses that are not tcp://)."""
    hp = _host_port(address)
    if hp is None:
        return False
    host, port = hp
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if sys.platform == "win32":
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_EXCLUSIVEADDRUSE", socket.SO_REUSEADDR), 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT port is free to bind
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _command_line(pid: int) -> list[str] | None:
    """The argv of a running process, where the system shows it (Linux /proc); None otherwise."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _same_command(cmdline: list[str], argv: list[str]) -> bool:
    """Whether a process's argv is the recorded command (a script's interpreter may come first and its
    path be spelt out in full)."""
    if len(cmdline) < len(argv) or cmdline[len(cmdline) - len(argv) + 1:] != argv[1:]:
        return False
    program = os.path.basename(argv[0])
    return any(os.path.basename(part) == program for part in cmdline[:len(cmdline) - len(argv) + 1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _stop_orphan(pid_path: Path) -> str | None:
    """Stop the worker that a Blender which is no longer running started; a note of what was done.

    A worker whose Blender still runs (another open Blender) is left alone, and so is a process that
    cannot be identified as the recorded command (the pid may have been reused)."""
    try:
        record = json.loads(pid_path.read_text())
        pid, argv, owner = int(record["pid"]), [str(a) for a in record["argv"]], int(record["owner"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if owner != os.getpid() and _alive(owner):
        return None
    pid_path.unlink(missing_ok=True)
    cmdline = _command_line(pid)
    if cmdline is None or not _same_command(cmdline, argv):
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return None
    return f"stopped a worker left running by a Blender that has ended (pid {pid})"


def start(command: str, state_dir: str | Path) -> subprocess.Popen:
    """Start the worker (once) with its output in ``state_dir/worker.log``; returns the running process.

    Refuses, with the reason, an empty command, a program that is not found, and a ``--bind`` port that
    something else already listens on."""
    global _worker
    if running():
        return _worker.process
    argv = split_command(command)
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    pid_path, log_path = state / PID_FILE, state / LOG_FILE
    orphan_note = _stop_orphan(pid_path)
    if shutil.which(argv[0]) is None:
        raise WorkerStartError(f"{argv[0]!r} is not found: set the worker command in the add-on preferences "
                               f"to the full path of the animus3d program (e.g. /path/to/venv/bin/animus3d "
                               f"worker --bind tcp://127.0.0.1:5555)")
    address = bind_address(command)
    if address and port_in_use(address):
        hint = f" ({orphan_note}; try again in a few seconds)" if orphan_note else ""
        raise WorkerStartError(f"{address} is already in use by another program{hint}: stop it, or change "
                               f"--bind in the worker command and the worker address")
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    except OSError as exc:
        raise WorkerStartError(f"cannot start the worker ({exc.strerror or exc}): {command}") from exc
    pid_path.write_text(json.dumps({"pid": process.pid, "argv": argv, "owner": os.getpid()}))
    if _worker is not None and _worker.process.poll() is None:
        _worker.process.kill()  # a stopped worker still in its grace period: the new one replaces it
    _worker = _Started(process, log_path, pid_path)
    return process


def running() -> bool:
    return _worker is not None and _worker.stop_deadline is None and _worker.process.poll() is None


def pid() -> int | None:
    return _worker.process.pid if running() else None


def log_path() -> Path | None:
    """The log of the worker started last (it stays after the worker ends)."""
    return _worker.log_path if _worker is not None else None


def log_tail(lines: int = LOG_TAIL_LINES) -> str:
    path = log_path()
    if path is None:
        return ""
    try:
        text = path.read_bytes()[-8192:].decode(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


def stop() -> None:
    """Ask the worker we started to end, without waiting; ``reap`` kills it after the grace period."""
    if _worker is None or _worker.stop_deadline is not None:
        return
    _worker.stop_deadline = time.monotonic() + STOP_GRACE_S
    if _worker.process.poll() is None:
        try:
            _worker.process.terminate()
        except OSError:
            pass
    reap()


def reap() -> str | None:
    """One non-blocking look at the worker (from the tick): kill it once a stop's grace has passed, and
    return a message the first time a worker that was not asked to stop is found ended."""
    global _worker
    w = _worker
    if w is None:
        return None
    code = w.process.poll()
    if w.stop_deadline is not None:
        if code is None and time.monotonic() >= w.stop_deadline:
            w.process.kill()
            code = w.process.poll()
        if code is not None:
            w.pid_path.unlink(missing_ok=True)
        return None
    if code is None or w.reported:
        return None
    w.reported = True
    w.pid_path.unlink(missing_ok=True)
    tail = log_tail()
    return (f"the local worker (pid {w.process.pid}) ended with exit code {code}"
            + (f": {tail}" if tail else "") + f" (log: {w.log_path})")


def stop_and_wait(timeout_s: float = STOP_GRACE_S) -> None:
    """Stop the worker and wait for it: for Blender's exit and the add-on's unregister only."""
    global _worker
    w = _worker
    if w is None:
        return
    stop()
    try:
        w.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        w.process.kill()
        w.process.wait(timeout_s)
    w.pid_path.unlink(missing_ok=True)
    _worker = None


atexit.register(stop_and_wait)
