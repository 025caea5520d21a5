"""10,000+ generated and mutated messages against a real worker process: each gets exactly one
reply, none is an internal error, and the worker serves normally afterwards."""

from __future__ import annotations

import time

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from animus3d_shared import protocol as p
from helpers_worker import start_worker
from test_protocol_fuzz import VALID_FRAMES, replace_header_values

pytestmark = pytest.mark.timeout(600)
BATCH = 50
EXAMPLES = 205  # x BATCH = 10,250 messages
SENT = {"messages": 0}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    # cost cap 0: a mutated SUBMIT that happens to be valid is refused, never run
    with start_worker(tmp_path_factory.mktemp("fuzz"), "--max-job-cost", "0", "--max-gaussians", "100") as worker:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger = 0
        sock.rcvtimeo = 30_000
        sock.connect(worker.endpoint)
        yield worker, sock
        sock.close(0)


def _flip_bytes(frames, data):
    frames = list(frames)
    i = data.draw(st.integers(0, len(frames) - 1))
    frame = bytearray(frames[i])
    if frame:
        for _ in range(data.draw(st.integers(1, 4))):
            frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    frames[i] = bytes(frame) or b"\x00"
    return frames


def _reshape_frames(frames, data):
    frames = list(frames)
    action = data.draw(st.sampled_from(["drop", "duplicate", "truncate"]))
    i = data.draw(st.integers(0, len(frames) - 1))
    if action == "drop" and len(frames) > 1:
        del frames[i]
    elif action == "duplicate":
        frames.insert(i, frames[i])
    else:
        frames[i] = frames[i][: data.draw(st.integers(0, max(0, len(frames[i]) - 1)))] or b"\xc1"
    return frames


def one_message(data):
    base = data.draw(st.sampled_from(VALID_FRAMES))
    how = data.draw(st.sampled_from(["header", "bytes", "frames", "garbage", "valid"]))
    if how == "header":
        return replace_header_values(base, data)
    if how == "bytes":
        return _flip_bytes(base, data)
    if how == "frames":
        return _reshape_frames(base, data)
    if how == "garbage":
        return [data.draw(st.binary(min_size=1, max_size=64))]
    return list(base)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_every_mutated_message_gets_one_reply_and_never_an_internal_error(target, data):
    worker, sock = target
    batch = [one_message(data) for _ in range(BATCH)]
    for frames in batch:
        sock.send_multipart(frames)
    replies = []
    for _ in batch:
        replies.append(p.decode(sock.recv_multipart()))  # raises zmq.Again if one goes unanswered
    SENT["messages"] += len(batch)
    for reply in replies:
        if isinstance(reply, p.Error):
            assert reply.code != "internal", reply
            assert "\n" not in reply.message
    assert worker.alive()


def test_the_worker_still_serves_after_the_fuzzing(target):
    worker, sock = target
    assert SENT["messages"] >= 10_000
    sock.send_multipart(p.encode(p.Status()))
    reply = p.decode(sock.recv_multipart())
    assert isinstance(reply, p.StatusReply)
    assert "handler failed" not in worker.log_text()
    assert worker.alive()
    time.sleep(0.1)
