"""WorkerClient against a real ROUTER socket played by the test (no worker process needed)."""

from __future__ import annotations

import time

import pytest
import zmq

from animus3d_shared import protocol as p
from animus3d_shared.client import ClientError, WorkerClient, WorkerUnreachable

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def router():
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(0)


def receive(sock, timeout_s=5.0):
    assert sock.poll(int(timeout_s * 1000)), "nothing arrived"
    identity, *frames = sock.recv_multipart()
    return identity, p.decode(frames, p.Limits())


def reply(sock, identity, message):
    sock.send_multipart([identity, *p.encode(message)])


def test_connect_does_not_block_and_sends_hello(router):
    sock, address = router
    client = WorkerClient(address, client_name="test-client")
    start = time.perf_counter()
    client.connect()
    assert time.perf_counter() - start < 0.1
    identity, hello = receive(sock)
    assert isinstance(hello, p.Hello) and hello.client_name == "test-client"
    assert hello.protocol_version == p.PROTOCOL_VERSION
    assert not client.connected  # no WELCOME yet
    client.close()


def test_poll_never_blocks_and_welcome_makes_it_connected(router):
    sock, address = router
    client = WorkerClient(address)
    client.connect()
    start = time.perf_counter()
    assert client.poll() == []
    assert time.perf_counter() - start < 0.05
    identity, _ = receive(sock)
    reply(sock, identity, p.Welcome(worker_version="9.9", device="cpu", models={"motion_prior": "tiny"},
                                    max_gaussians=10, max_queued_per_client=1))
    welcome = client.wait_for(lambda m: isinstance(m, p.Welcome), 5.0)
    assert client.welcome is welcome and client.connected and not client.lost
    client.close()


def test_poll_sends_heartbeats_when_due(router):
    sock, address = router
    client = WorkerClient(address, heartbeat_interval_s=0.2)
    client.connect()
    receive(sock)  # HELLO
    time.sleep(0.25)
    client.poll()
    _, beat = receive(sock, 1.0)
    assert isinstance(beat, p.Heartbeat)
    client.close()


def test_a_silent_worker_is_reported_lost_once(router):
    _, address = router
    client = WorkerClient(address, timeout_s=0.3)
    client.connect()
    assert not client.lost
    time.sleep(0.35)
    first = client.poll()
    assert [type(m) for m in first] == [p.Error] and first[0].code == "unreachable"
    assert address in first[0].message
    assert client.lost
    assert client.poll() == []  # reported once
    client.close()


def test_wait_for_keeps_other_messages_for_the_next_poll(router):
    sock, address = router
    client = WorkerClient(address)
    client.connect()
    identity, _ = receive(sock)
    reply(sock, identity, p.Heartbeat())
    reply(sock, identity, p.Cancelled(job_id="a"))
    reply(sock, identity, p.Accepted(job_id="b", queue_position=3))
    accepted = client.wait_for(lambda m: isinstance(m, p.Accepted), 5.0)
    assert accepted.job_id == "b" and accepted.queue_position == 3
    rest = client.poll()
    assert [type(m) for m in rest] == [p.Cancelled]  # heartbeats are not handed out
    client.close()


def test_wait_for_reads_a_long_backlog_without_waiting_on_the_socket(router):
    """Thousands of skipped PROGRESS messages must not make a later wait_for time out."""
    sock, address = router
    client = WorkerClient(address, timeout_s=30.0)
    client.connect()
    identity, _ = receive(sock)
    for step in range(3000):
        reply(sock, identity, p.Progress(job_id="a", stage="msd", step=step, total=3000))
    reply(sock, identity, p.Cancelled(job_id="a"))
    reply(sock, identity, p.Accepted(job_id="b", queue_position=0))
    assert client.wait_for(lambda m: isinstance(m, p.Accepted), 10.0).job_id == "b"
    start = time.monotonic()  # the socket is now quiet; what is wanted sits behind 3000 queued messages
    assert client.wait_for(lambda m: isinstance(m, p.Cancelled), 4.0).job_id == "a"
    assert time.monotonic() - start < 2.0
    assert len(client.poll(max_messages=5000)) == 3000  # the skipped messages are all still there, in order
    client.close()


def test_wait_for_a_worker_that_never_answers_raises(router):
    _, address = router
    client = WorkerClient(address, timeout_s=0.3)
    client.connect()
    with pytest.raises(WorkerUnreachable):
        client.wait_for(lambda m: isinstance(m, p.Welcome), 5.0)
    client.close()
    client = WorkerClient(address, timeout_s=5.0)
    client.connect()
    with pytest.raises(TimeoutError):
        client.wait_for(lambda m: isinstance(m, p.Welcome), 0.3)
    client.close()


def test_a_garbled_reply_becomes_a_local_error(router):
    sock, address = router
    client = WorkerClient(address)
    client.connect()
    identity, _ = receive(sock)
    sock.send_multipart([identity, b"\x01garbage"])
    error = client.wait_for(lambda m: isinstance(m, p.Error), 5.0)
    assert error.code.startswith("bad_")


def test_requests_before_connect_and_half_curve_keys_are_refused():
    client = WorkerClient("tcp://127.0.0.1:9")
    with pytest.raises(ClientError):
        client.request_status()
    with pytest.raises(ClientError):
        WorkerClient("tcp://127.0.0.1:9", curve_server_public=b"x" * 40)


def bind_when_free(sock, address, timeout_s=5.0):
    """Binds the address a just-closed socket held (ZeroMQ releases it in its I/O thread, a moment later)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            sock.bind(address)
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_a_restart_re_attaches_every_followed_job_until_the_worker_answers():
    """After a restart the client re-attaches its jobs; an ATTACH that goes unanswered (dropped from a
    send queue that filled while the worker was away) is sent again until ATTACHED arrives."""
    ctx = zmq.Context.instance()
    first = ctx.socket(zmq.ROUTER)
    first.linger = 0
    port = first.bind_to_random_port("tcp://127.0.0.1")
    address = f"tcp://127.0.0.1:{port}"
    client = WorkerClient(address, timeout_s=60.0, heartbeat_interval_s=0.05)
    client.connect()
    identity, _ = receive(first)
    reply(first, identity, p.Welcome(worker_version="1", device="cpu", models={}, max_gaussians=10,
                                     max_queued_per_client=4, instance_id="first"))
    reply(first, identity, p.Accepted(job_id="job-1", queue_position=0))
    assert client.wait_for(lambda m: isinstance(m, p.Accepted), 5.0).job_id == "job-1"
    first.close(0)
    second = ctx.socket(zmq.ROUTER)
    second.linger = 0
    bind_when_free(second, address)
    try:
        attaches, restarted, answered_at = [], False, None
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and (answered_at is None or time.monotonic() < answered_at + 0.5):
            received = client.poll()
            restarted = restarted or any(isinstance(m, p.Error) and m.code == "worker_restarted" for m in received)
            while second.poll(0):
                peer, *frames = second.recv_multipart()
                message = p.decode(frames, p.Limits())
                if isinstance(message, p.Heartbeat):
                    reply(second, peer, p.Heartbeat(instance_id="second"))
                elif isinstance(message, p.Attach):
                    attaches.append(message.job_id)
                    if len(attaches) == 2:  # the first one is "lost"
                        reply(second, peer, p.Attached(job_id="job-1", state="running", queue_position=0))
                        answered_at = time.monotonic()
            time.sleep(0.005)
        assert restarted
        assert attaches == ["job-1", "job-1"]  # sent again while unanswered, then no more
        assert client.following == {"job-1"}  # still waiting for the job's outcome
    finally:
        client.close()
        second.close(0)
