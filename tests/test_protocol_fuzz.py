"""Property-based fuzzing of the protocol decoder: malformed input only ever raises ProtocolError."""

from __future__ import annotations

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from animus3d_shared import protocol as p
from animus3d_shared.deformation import Animation
from animus3d_shared.splat import GaussianSplat

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = sorted(p.message_kinds())


def _splat(n: int) -> GaussianSplat:
    rng = np.random.default_rng(n)
    quats = rng.normal(size=(n, 4)).astype(np.float32)
    quats[:, 0] += 3.0
    return GaussianSplat(means=rng.normal(size=(n, 3)).astype(np.float32), quats=quats,
                         log_scales=np.full((n, 3), -4, np.float32), opacity_logits=np.zeros(n, np.float32),
                         sh_dc=rng.normal(size=(n, 3)).astype(np.float32),
                         sh_rest=rng.normal(size=(n, 3, 3)).astype(np.float32),
                         part_ids=np.zeros(n, np.int32), part_names=("all",))


def _anim(frames: int, n: int) -> Animation:
    rot = np.zeros((frames, n, 4), np.float32)
    rot[..., 0] = 1
    return Animation(np.ones((frames, n, 3), np.float32), rot, np.zeros((frames, n, 3), np.float32), 8.0)


VALID = [
    p.Hello(client_name="c"),
    p.Welcome(worker_version="1", device="cpu", models={"m": "x"}, max_gaussians=5, max_queued_per_client=1),
    p.Submit(splat=_splat(6), prompt="a cat jumps", settings={"preset": "draft"}, seed=2),
    p.Accepted(job_id="j", queue_position=0),
    p.Progress(job_id="j", stage="msd", step=1, total=3, losses={"a": 1.0}, eta_s=2.0),
    p.Preview(job_id="j", stage="msd", animation=_anim(2, 3), step=1, indices=np.array([0, 2, 4], np.int32)),
    p.Result(job_id="j", animation=_anim(3, 6), loss_history={"a": [1.0, 2.0]}),
    p.Error(code="internal", message="m", job_id="j"),
    p.Cancel(job_id="j"),
    p.Cancelled(job_id="j"),
    p.Status(),
    p.StatusReply(worker_version="1", device="cpu", models={}, running={"id": "j"}, queue=[{"id": "k"}]),
    p.Attach(job_id="j"),
    p.Attached(job_id="j", state="running", queue_position=None),
    p.Heartbeat(time=1.0),
]
VALID_FRAMES = [[bytes(f) for f in p.encode(m)] for m in VALID]

plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


def decode_or_protocol_error(frames) -> None:
    """Decoding must give a message of a known kind or raise ProtocolError, nothing else."""
    try:
        message = p.decode(frames)
    except p.ProtocolError as exc:
        assert exc.code in p.ERROR_CODES and "\n" not in exc.message
        assert not exc.message.startswith("malformed message"), exc.message  # a validation gap
        return
    assert type(message) in p.MESSAGE_TYPES


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data):
    decode_or_protocol_error([data])
    try:
        p.decode_single(data)
    except p.ProtocolError:
        pass


@FUZZ
@given(st.lists(st.binary(max_size=100), max_size=40))
def test_random_frame_lists(frames):
    decode_or_protocol_error(frames)


@FUZZ
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_flipped_header_bytes(frames, data):
    header = bytearray(frames[0])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(header) - 1))
        header[i] = data.draw(st.integers(0, 255))
    decode_or_protocol_error([bytes(header), *frames[1:]])


@FUZZ
@given(st.sampled_from([f for f in VALID_FRAMES if len(f) > 1]), st.data())
def test_truncated_or_extended_array_frames(frames, data):
    frames = list(frames)
    i = data.draw(st.integers(1, len(frames) - 1))
    if data.draw(st.booleans()):
        frames[i] = frames[i][: data.draw(st.integers(0, max(0, len(frames[i]) - 1)))]
    else:
        frames[i] = frames[i] + data.draw(st.binary(min_size=1, max_size=16))
    decode_or_protocol_error(frames)


@FUZZ
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_dropped_duplicated_reordered_frames(frames, data):
    frames = list(frames)
    action = data.draw(st.sampled_from(["drop", "duplicate", "reorder"]))
    if action == "drop":
        del frames[data.draw(st.integers(0, len(frames) - 1))]
    elif action == "duplicate":
        i = data.draw(st.integers(0, len(frames) - 1))
        frames.insert(data.draw(st.integers(0, len(frames))), frames[i])
    else:
        frames = data.draw(st.permutations(frames))
    decode_or_protocol_error(frames)


def _paths(value, prefix=()):
    """Every key path into a nested header (maps and lists)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def replace_header_values(frames, data):
    """``frames`` with one to three values anywhere in the header replaced by random plain data."""
    header = msgpack.unpackb(frames[0])
    paths = [path for path in _paths(header) if path]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        target = header
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = data.draw(plain_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    return [msgpack.packb(header, use_bin_type=True), *frames[1:]]


@FUZZ
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_header_values_replaced(frames, data):
    decode_or_protocol_error(replace_header_values(frames, data))


@FUZZ
@given(st.sampled_from(VALID_FRAMES), st.sampled_from(KINDS + ["", "hello", "SUBMIT "]))
def test_swapped_kind(frames, kind):
    header = msgpack.unpackb(frames[0])
    header["kind"] = kind
    decode_or_protocol_error([msgpack.packb(header, use_bin_type=True), *frames[1:]])


@FUZZ
@given(st.sampled_from([f for f in VALID_FRAMES if len(f) > 1]), st.data())
def test_nan_injection(frames, data):
    header = msgpack.unpackb(frames[0])
    float_refs = [path for path in _paths(header)
                  if path and isinstance(_get(header, path), dict) and _get(header, path).get("dtype") == "<f4"]
    path = data.draw(st.sampled_from(float_refs))
    index = 1 + _get(header, path)["$nd"]
    values = np.frombuffer(frames[index], np.float32).copy()
    values[data.draw(st.integers(0, values.size - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    frames = list(frames)
    frames[index] = values.tobytes()
    try:
        p.decode(frames)
    except p.ProtocolError as exc:
        assert exc.code == p.BAD_ARRAY
    else:
        raise AssertionError("a non-finite array value was accepted")


def _get(value, path):
    for key in path:
        value = value[key]
    return value


def test_valid_messages_decode():
    for message, frames in zip(VALID, VALID_FRAMES):
        assert type(p.decode(frames)) is type(message)
