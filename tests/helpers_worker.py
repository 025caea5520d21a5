"""Start a real `animus3d worker` subprocess on a free loopback port, for tests.

    from helpers_worker import start_worker       # or: from tests.helpers_worker import ...
    with start_worker(tmp_path) as worker:
        client = worker.client()                  # a WorkerClient, already connected
        ...

The worker binds ``tcp://127.0.0.1:*`` (ZeroMQ picks a free port) and prints the endpoint it
got, so there is no race for the port. Logs go to ``worker.log_path``. It runs on the CPU with
the tiny prior (``--models`` written to the given directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

LISTENING = "animus3d worker listening on "


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen, endpoint: str, log_path: Path) -> None:
        self.proc = proc
        self.endpoint = endpoint
        self.log_path = log_path
        self._clients: list = []

    def client(self, *, connect: bool = True, **kwargs):
        """A ``WorkerClient`` to this worker (closed when the worker stops)."""
        from animus3d_shared.client import WorkerClient

        kwargs.setdefault("timeout_s", 20.0)
        client = WorkerClient(self.endpoint, **kwargs)
        if connect:
            client.connect()
        self._clients.append(client)
        return client

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Sends ``sig`` and waits; kills after ``timeout``. Returns the exit code."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def worker_command(*args: str, subcommand: str = "worker") -> list[str]:
    return [sys.executable, "-m", "animus3d_worker.cli", subcommand, *args]


def write_tiny_models_config(directory: Path) -> Path:
    path = Path(directory) / "models.json"
    path.write_text(json.dumps({"motion_prior": "tiny", "lora_cache_dir": str(Path(directory) / "lora-cache")}))
    return path


def launch_worker(directory: Path, *extra: str, bind: str = "tcp://127.0.0.1:*",
                  startup_timeout: float = 90.0, subcommand: str = "worker") -> WorkerProcess:
    """Starts a worker (or ``subcommand``: ``farm``) and waits until it listens. Raises RuntimeError
    with its log if it does not."""
    listening = f"animus3d {subcommand} listening on "
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"worker-{time.monotonic_ns()}.log"
    args = ["--bind", bind, "--device", "cpu", *extra]
    if "--models" not in extra:
        args += ["--models", str(write_tiny_models_config(directory))]
    if "--state-dir" not in extra:
        args += ["--state-dir", str(directory / f"state-{time.monotonic_ns()}")]
    log = open(log_path, "w")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(worker_command(*args, subcommand=subcommand), stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    log.close()
    deadline = time.monotonic() + startup_timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(listening) or not line:
            break
    if not line.startswith(listening):
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"worker did not start (exit {proc.returncode}):\n{log_path.read_text()[-4000:]}")
    endpoint = line[len(listening):].split()[0]
    return WorkerProcess(proc, endpoint, log_path)


@contextlib.contextmanager
def start_worker(directory: Path, *extra: str, **kwargs) -> Iterator[WorkerProcess]:
    """``launch_worker`` as a context manager that stops the worker (SIGTERM) on exit."""
    worker = launch_worker(directory, *extra, **kwargs)
    try:
        yield worker
    finally:
        worker.stop()


def small_splat(count: int = 150, seed: int = 0):
    """A few hundred Gaussians: enough for the pipeline's test preset, fast on a CPU."""
    from animus3d_shared.samples import make_test_blob

    return make_test_blob(seed=seed, count=count)
