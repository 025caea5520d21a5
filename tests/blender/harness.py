"""Runs scenario scripts in fresh bpy subprocesses (bpy is never imported into pytest).

Each scenario gets its own copy of a user-resources folder where the built extension zip was
installed once per test session, so scenarios are isolated and fast.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
ANIMUS3D = Path(sys.executable).parent / "animus3d"
# Headless Blender 4.2 LTS and 4.5 LTS (bpy 4.2.0 and 4.5.15, Python 3.11), each in its own
# environment; `make test` creates them. Blender 5.0 is the test environment's own bpy.
LTS_PYTHONS = {"4.2": ROOT / ".venv-bpy42" / "bin" / "python", "4.5": ROOT / ".venv-bpy45" / "bin" / "python"}
BLENDERS = ["4.2", "4.5", "5.0"]


class ScenarioFailed(AssertionError):
    """A scenario script exited with an error."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_scenario(script: str, user_dir: Path, *args: str, timeout: float = 120.0, env: dict | None = None,
                 python: Path | str | None = None) -> dict:
    """Run ``scripts/<script>`` under bpy with BLENDER_USER_RESOURCES=user_dir; returns its JSON result.
    ``python``: the interpreter whose bpy runs it (default: the one running the tests)."""
    out = user_dir.parent / f"{script}.{os.getpid()}.json"
    if out.exists():
        out.unlink()
    full_env = dict(os.environ, BLENDER_USER_RESOURCES=str(user_dir), ANIMUS3D_RESULT=str(out),
                    PYTHONPATH=str(SCRIPTS))
    full_env.update(env or {})
    proc = subprocess.run([str(python or sys.executable), str(SCRIPTS / script), *args], env=full_env, capture_output=True,
                          text=True, timeout=timeout, cwd=str(user_dir.parent))
    if proc.returncode != 0 or not out.exists():
        raise ScenarioFailed(f"{script} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return json.loads(out.read_text())


def copy_user_dir(template: Path, target: Path) -> Path:
    shutil.copytree(template, target, symlinks=True)
    return target


class Worker:
    """A real ``animus3d worker`` subprocess on a free port."""

    def __init__(self, log_dir: Path, *extra: str):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"worker-{self.port}.log", "w")
        self.proc = subprocess.Popen([str(ANIMUS3D), "worker", "--bind", self.address, "--device", "cpu", *extra],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_listening(self, timeout_s: float = 120.0) -> "Worker":
        """Return once the worker's port accepts connections (a loaded machine starts it slowly)."""
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"worker on port {self.port} is not listening:\n{self.log_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()
