"""The add-on's local worker: real child processes and sockets, the module loaded without Blender."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and /proc")

# A stand-in worker: listens on the --bind port, prints a line, ignores SIGTERM or takes a second to
# end on it when asked to.
FAKE_WORKER = r'''
import signal, socket, sys, time
args = sys.argv[1:]
if "--ignore-term" in args:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--slow-term" in args:
    signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.0), sys.exit(0)))
if "--fail" in args:
    print("fake worker: cannot load the prior", flush=True)
    sys.exit(3)
port = int(args[args.index("--bind") + 1].rsplit(":", 1)[1])
s = socket.socket(); s.bind(("127.0.0.1", port)); s.listen()
print("fake worker listening", flush=True)
time.sleep(120)
'''


@pytest.fixture
def lw(monkeypatch):
    spec = importlib.util.spec_from_file_location("animus3d_local_worker_under_test",
                                                  ROOT / "blender_addon" / "local_worker.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "STOP_GRACE_S", 0.5)
    yield module
    module.stop_and_wait(2.0)


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "fake_worker.py"
    path.write_text(FAKE_WORKER)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(fake, port, *extra) -> str:
    return " ".join([sys.executable, str(fake), "--bind", f"tcp://127.0.0.1:{port}", *extra])


def wait_listening(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_stop_returns_at_once_and_the_tick_kills_a_worker_that_ignores_sigterm(lw, fake, tmp_path):
    port = free_port()
    proc = lw.start(command(fake, port, "--ignore-term"), tmp_path / "state")
    wait_listening(port)
    t0 = time.perf_counter()
    lw.stop()
    assert time.perf_counter() - t0 < 0.1  # Blender's UI never waits on the worker
    assert proc.poll() is None and not lw.running()
    end = time.monotonic() + 5
    while proc.poll() is None and time.monotonic() < end:
        assert lw.reap() is None  # a stop that was asked for is not reported as a failure
        time.sleep(0.05)
    assert proc.poll() is not None  # killed after the grace period
    assert lw.reap() is None
    assert not (tmp_path / "state" / lw.PID_FILE).exists()


def test_start_refuses_a_port_another_program_listens_on(lw, fake, tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(lw.WorkerStartError, match=f"tcp://127.0.0.1:{port} is already in use"):
            lw.start(command(fake, port), tmp_path / "state")
    assert not lw.running()


def test_a_worker_that_ends_on_its_own_is_reported_once_with_its_log(lw, fake, tmp_path):
    proc = lw.start(command(fake, free_port(), "--fail"), tmp_path / "state")
    proc.wait(10)
    message = lw.reap()
    assert "exit code 3" in message and "cannot load the prior" in message and str(lw.log_path()) in message
    assert lw.reap() is None
    assert "cannot load the prior" in lw.log_path().read_text()


def test_a_program_that_is_not_found_gets_a_clear_error(lw, tmp_path):
    with pytest.raises(lw.WorkerStartError, match="'animus3d-missing' is not found: set the worker command"):
        lw.start("animus3d-missing worker --bind tcp://127.0.0.1:5555", tmp_path / "state")


def _orphan(fake, port, state: Path, owner: int, *extra: str) -> subprocess.Popen:
    """A worker whose pid file names ``owner`` as the Blender that started it."""
    argv = [sys.executable, str(fake), "--bind", f"tcp://127.0.0.1:{port}", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    state.mkdir(parents=True, exist_ok=True)
    (state / "worker.json").write_text(json.dumps({"pid": proc.pid, "argv": argv, "owner": owner}))
    wait_listening(port)
    return proc


def _ended_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to identify the orphan")
def test_the_next_start_stops_the_orphan_of_a_blender_that_crashed(lw, fake, tmp_path):
    port = free_port()
    # the orphan takes a second to end on SIGTERM, so it still holds the port when start looks
    orphan = _orphan(fake, port, tmp_path / "state", _ended_pid(), "--slow-term")
    try:
        with pytest.raises(lw.WorkerStartError, match="stopped a worker left running by a Blender that has ended"):
            lw.start(command(fake, port), tmp_path / "state")
        orphan.wait(5)
        proc = lw.start(command(fake, port), tmp_path / "state")
        wait_listening(port)
        assert proc.pid != orphan.pid and lw.running()
    finally:
        orphan.kill()


def test_a_worker_of_another_running_blender_is_left_alone(lw, fake, tmp_path):
    port = free_port()
    other = _orphan(fake, port, tmp_path / "state", owner=os.getppid())  # a live process "owns" it
    try:
        with pytest.raises(lw.WorkerStartError, match="already in use by another program: stop it"):
            lw.start(command(fake, port), tmp_path / "state")
        time.sleep(0.2)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
