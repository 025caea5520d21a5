"""Starting and stopping the worker: the bind policy, CURVE authentication, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from animus3d_shared import protocol as p
from animus3d_shared.client import WorkerClient
from helpers_worker import launch_worker, small_splat, start_worker, worker_command

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("bind", ["tcp://0.0.0.0:45123", "tcp://*:45123", "tcp://192.0.2.1:45123"])
def test_non_loopback_bind_without_keys_is_refused_with_one_line(bind):
    out = subprocess.run(worker_command("--bind", bind, "--device", "cpu"), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    message = out.stderr.strip()
    assert message.count("\n") == 0, message
    assert "--keys" in message and bind in message


def test_keygen_then_curve_client_works_and_strangers_get_nothing(tmp_path):
    keys = tmp_path / "keys"
    made = subprocess.run([*worker_command()[:-1], "keygen", str(keys), "--client", "artist"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert (keys / "server.key_secret").is_file() and (keys / "authorized_clients" / "artist.key").is_file()
    from animus3d_worker.service.security import generate_keys, load_client_keys, load_public_key

    stranger_dir = tmp_path / "stranger"
    generate_keys(stranger_dir, "mallory")  # a valid pair the worker has never been told about

    # --keys lets the worker bind a non-loopback address
    with start_worker(tmp_path / "w", "--keys", str(keys), bind="tcp://0.0.0.0:*") as worker:
        port = worker.endpoint.rsplit(":", 1)[1]
        address = f"tcp://127.0.0.1:{port}"
        server_public = load_public_key(keys / "server.key")
        public, secret = load_client_keys(keys / "clients" / "artist.key_secret")
        good = WorkerClient(address, curve_server_public=server_public, curve_client_public=public,
                            curve_client_secret=secret, timeout_s=10.0)
        good.connect()
        assert isinstance(good.wait_for(lambda m: isinstance(m, p.Welcome), 10.0), p.Welcome)

        m_public, m_secret = load_client_keys(stranger_dir / "clients" / "mallory.key_secret")
        strangers = [
            WorkerClient(address, timeout_s=1.5),  # plain text
            WorkerClient(address, curve_server_public=server_public, curve_client_public=m_public,
                         curve_client_secret=m_secret, timeout_s=1.5),  # unauthorised key
        ]
        for client in strangers:
            client.connect()
        time.sleep(1.7)
        for client in strangers:
            messages = client.poll(max_messages=64)
            assert [m.code for m in messages] == ["unreachable"]
            assert client.lost and not client.connected
            client.close()
        # the worker is unharmed
        good.request_status()
        assert isinstance(good.wait_for(lambda m: isinstance(m, p.StatusReply), 10.0), p.StatusReply)
        good.close()


def test_sigterm_during_a_job_ends_it_shutting_down_and_exits_zero_quickly(tmp_path):
    worker = launch_worker(tmp_path)
    try:
        client = worker.client()
        client.submit(small_splat(100), "a blob spins", settings={"preset": "test", "msd_steps": 20000, "preview_every": 0})
        accepted = client.wait_for(lambda m: isinstance(m, (p.Accepted, p.Error)), 20.0)
        assert isinstance(accepted, p.Accepted), accepted
        running = client.wait_for(lambda m: isinstance(m, p.Error) or (isinstance(m, p.Progress) and m.stage == "msd"), 60.0)
        assert isinstance(running, p.Progress), (running, worker.log_text()[-2000:])
        start = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(15)
        took = time.monotonic() - start
        print(f"worker stopped {took * 1000:.0f} ms after SIGTERM")
        assert code == 0
        assert took < 5.0
        final = client.wait_for(lambda m: isinstance(m, (p.Cancelled, p.Result, p.Error)), 5.0)
        assert isinstance(final, p.Error) and final.code == "shutting_down", final  # as docs/protocol.md says
        assert "event=stopped" in worker.log_text()
    finally:
        worker.stop(signal.SIGKILL)


def test_sigterm_with_a_running_and_a_queued_job_tells_both_clients_shutting_down(tmp_path):
    worker = launch_worker(tmp_path)
    try:
        first = worker.client(token="sigterm-running-token-0123456789")
        second = worker.client(token="sigterm-queued-token-0123456789")
        long_job = {"preset": "test", "msd_steps": 20000, "preview_every": 0}
        first.submit(small_splat(100), "a blob spins", settings=long_job)
        running = first.wait_for(lambda m: isinstance(m, (p.Accepted, p.Error)), 20.0)
        assert isinstance(running, p.Accepted), running
        first.wait_for(lambda m: isinstance(m, p.Progress) and m.job_id == running.job_id and m.stage == "msd", 60.0)
        second.submit(small_splat(80), "a blob hops", settings=long_job)
        queued = second.wait_for(lambda m: isinstance(m, (p.Accepted, p.Error)), 20.0)
        assert isinstance(queued, p.Accepted) and queued.queue_position == 1, queued
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(15) == 0
        for client, job in ((first, running), (second, queued)):
            final = client.wait_for(lambda m: isinstance(m, (p.Cancelled, p.Result, p.Error))
                                    and getattr(m, "job_id", None) == job.job_id, 5.0)
            assert isinstance(final, p.Error) and final.code == "shutting_down", final  # as docs/protocol.md says
    finally:
        worker.stop(signal.SIGKILL)
