"""Wire protocol: round trips of every kind, zero-copy decoding and each validation rule's code."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from animus3d_shared import protocol as p
from animus3d_shared.deformation import Animation
from animus3d_shared.splat import GaussianSplat

RNG = np.random.default_rng(7)


def make_splat(n: int = 50, degree: int = 3, parts: bool = False) -> GaussianSplat:
    rng = np.random.default_rng(n + degree)
    k = {0: 0, 1: 3, 2: 8, 3: 15}[degree]
    quats = rng.normal(size=(n, 4)).astype(np.float32)
    quats[:, 0] += 3.0  # never zero-length
    arrays = dict(means=rng.normal(size=(n, 3)), quats=quats, log_scales=rng.normal(size=(n, 3)) - 4,
                  opacity_logits=rng.normal(size=n), sh_dc=rng.normal(size=(n, 3)),
                  sh_rest=rng.normal(size=(n, k, 3)))
    arrays = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in arrays.items()}
    if parts:
        return GaussianSplat(**arrays, part_ids=(np.arange(n) % 3).astype(np.int32),
                             part_names=("head", "body", "legs"))
    return GaussianSplat(**arrays)


def make_animation(frames: int = 4, n: int = 50, fps: float = 12.0) -> Animation:
    rng = np.random.default_rng(frames * 1000 + n)
    rot = rng.normal(size=(frames, n, 4)).astype(np.float32)
    return Animation(rng.normal(size=(frames, n, 3)).astype(np.float32), rot,
                     rng.normal(size=(frames, n, 3)).astype(np.float32), fps)


def submit(**changes) -> p.Submit:
    values = dict(splat=make_splat(), prompt="a dog wags its tail", settings={"preset": "draft"}, seed=3)
    values.update(changes)
    return p.Submit(**values)


ALL_MESSAGES = [
    p.Hello(client_name="blender", client_version="0.1"),
    p.Welcome(worker_version="0.1", device="cuda:0 (H100)", models={"video": "zeroscope"}, max_gaussians=10,
              max_queued_per_client=4),
    submit(),
    submit(splat=make_splat(30, degree=0, parts=True), static_prompt="a dog", settings={}),
    p.Accepted(job_id="j1", queue_position=2),
    p.Progress(job_id="j1", stage="msd", step=5, total=100, losses={"sds": 0.5}, eta_s=12.5, message="hi"),
    p.Progress(job_id="j1", stage="load", step=0, total=1),
    p.Preview(job_id="j1", stage="msd", animation=make_animation(3, 10), step=7,
              indices=np.arange(0, 20, 2, dtype=np.int32)),
    p.Preview(job_id="j1", stage="refine", animation=make_animation(2, 50)),
    p.Result(job_id="j1", animation=make_animation(16, 50), settings={"preset": "draft", "steps": 3}, seed=1,
             prompt="x", static_prompt="y", device="cpu", timings={"msd": 1.5}, losses={"sds": 0.1},
             loss_history={"sds": [1.0, 0.5, 0.25]}),
    p.Error(code="queue_full", message="too many", job_id="j1"),
    p.Error(code="internal", message="boom"),
    p.Cancel(job_id="j1"),
    p.Cancelled(job_id="j1"),
    p.Status(),
    p.StatusReply(worker_version="0.1", device="cpu", models={}, running={"id": "j1", "step": 3, "x": [1, 2.5, None]},
                  queue=[{"id": "j2", "position": 1}, {"id": "j3", "nested": {"a": True}}], kept_results=2),
    p.StatusReply(worker_version="0.1", device="cpu", models={"a": "b"}),
    p.Attach(job_id="j1"),
    p.Attached(job_id="j1", state="queued", queue_position=1),
    p.Attached(job_id="j1", state="done"),
    p.Heartbeat(time=12345.5),
]


def assert_same(a, b) -> None:
    """Deep equality with bit-exact arrays (dtype, shape and bytes)."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, GaussianSplat):
        assert isinstance(b, GaussianSplat)
        for name, arr in a.arrays().items():
            assert_same(arr, getattr(b, name))
        assert (a.part_ids is None) == (b.part_ids is None)
        if a.part_ids is not None:
            assert_same(a.part_ids, b.part_ids)
        assert tuple(a.part_names) == tuple(b.part_names)
    elif isinstance(a, Animation):
        assert isinstance(b, Animation) and a.fps == b.fps
        for name in ("delta_position", "delta_rotation", "delta_scale"):
            assert_same(getattr(a, name), getattr(b, name))
    elif hasattr(a, "KIND"):
        assert type(a) is type(b)
        for name in a.__dataclass_fields__:
            assert_same(getattr(a, name), getattr(b, name))
    else:
        assert a == b and type(a) is type(b)


def test_every_kind_is_covered():
    assert {type(m) for m in ALL_MESSAGES} == set(p.MESSAGE_TYPES)


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: m.KIND)
def test_round_trip_frames(message):
    frames = p.encode(message)
    header = msgpack.unpackb(frames[0])
    assert header["v"] == p.PROTOCOL_VERSION and header["kind"] == message.KIND
    assert_same(message, p.decode([bytes(f) for f in frames]))


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: m.KIND)
def test_round_trip_single_blob(message):
    blob = p.encode_single(message)
    assert isinstance(blob, bytes)
    assert_same(message, p.decode_single(blob))


def test_header_is_flat_with_array_refs():
    frames = p.encode(p.Preview(job_id="j", stage="msd", animation=make_animation(2, 5),
                                indices=np.arange(5, dtype=np.int32)))
    header = msgpack.unpackb(frames[0])
    assert set(header) == {"v", "kind", "job_id", "stage", "animation", "step", "indices"}
    refs = [header["animation"][k] for k in ("delta_position", "delta_rotation", "delta_scale")] + [header["indices"]]
    assert sorted(r["$nd"] for r in refs) == [0, 1, 2, 3]
    assert header["indices"] == {"$nd": header["indices"]["$nd"], "dtype": "<i4", "shape": [5]}
    assert len(frames) == 1 + len(refs)


def test_big_endian_arrays_encode_as_little_endian():
    anim = make_animation(2, 5)
    swapped = Animation(anim.delta_position.astype(">f4").astype(np.float32), anim.delta_rotation,
                        anim.delta_scale, anim.fps)
    indices = np.arange(5, dtype=">i4")
    frames = p.encode(p.Preview(job_id="j", stage="msd", animation=swapped, indices=indices))
    out = p.decode(frames)
    assert out.indices.dtype == np.dtype("<i4") and out.indices.tolist() == list(range(5))


def test_decoded_arrays_share_memory_with_received_frames():
    message = p.Result(job_id="j", animation=make_animation(3, 20))
    received = [bytearray(f) for f in p.encode(message)]  # as if off the wire
    out = p.decode(received)
    arrays = [out.animation.delta_position, out.animation.delta_rotation, out.animation.delta_scale]
    for arr in arrays:
        assert any(np.shares_memory(arr, np.frombuffer(frame, np.uint8)) for frame in received[1:])
    assert not arrays[0].flags.owndata


def test_decoded_splat_shares_memory_with_zmq_frames():
    zmq = pytest.importorskip("zmq")
    ctx = zmq.Context()
    try:
        pull = ctx.socket(zmq.PULL)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push = ctx.socket(zmq.PUSH)
        push.connect(f"tcp://127.0.0.1:{port}")
        message = submit(splat=make_splat(2000))
        push.send_multipart(p.encode(message), copy=False)
        assert pull.poll(5000)
        frames = pull.recv_multipart(copy=False)
        out = p.decode(frames)
        assert_same(message, out)
        views = [np.frombuffer(f.buffer, np.uint8) for f in frames[1:]]
        assert any(np.shares_memory(out.splat.sh_rest, v) for v in views)
        push.close(0)
        pull.close(0)
    finally:
        ctx.term()


# ---- validation ---------------------------------------------------------------------------------
def header_and_frames(message):
    frames = p.encode(message)
    return msgpack.unpackb(frames[0]), [bytes(f) for f in frames[1:]]


def pack(header, frames=()):
    return [msgpack.packb(header, use_bin_type=True), *frames]


def code_of(frames, limits=p.DEFAULT_LIMITS) -> str:
    with pytest.raises(p.ProtocolError) as info:
        p.decode(frames, limits)
    assert "\n" not in info.value.message and info.value.message.strip()
    assert info.value.code in p.ERROR_CODES
    return info.value.code


def with_field(message, **changes):
    header, frames = header_and_frames(message)
    header.update(changes)
    return pack(header, frames)


def without_field(message, name):
    header, frames = header_and_frames(message)
    del header[name]
    return pack(header, frames)


@pytest.mark.parametrize("frames", [
    [b"\xc1garbage"], [b""], [], [msgpack.packb([1, 2])], [msgpack.packb("HELLO")], [b"\x92\x01"], [12],
], ids=["garbage", "empty-header", "no-frames", "list-header", "str-header", "truncated", "not-bytes"])
def test_bad_message(frames):
    assert code_of(frames) == p.BAD_MESSAGE


def test_unreferenced_extra_frame_is_bad_message():
    assert code_of([*p.encode(p.Cancel(job_id="j")), b"extra"]) == p.BAD_MESSAGE
    assert code_of([*p.encode(p.Preview(job_id="j", stage="msd", animation=make_animation(1, 2))), b""]) == p.BAD_MESSAGE


def test_decode_single_garbage_is_bad_message():
    for blob in (b"", b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([1, 2]), msgpack.packb(["x"])):
        with pytest.raises(p.ProtocolError) as info:
            p.decode_single(blob)
        assert info.value.code == p.BAD_MESSAGE


@pytest.mark.parametrize("version", [None, 0, 1, 3, "2", 2.0, True])
def test_bad_version(version):
    message = p.Cancel(job_id="j")
    frames = without_field(message, "v") if version is None else with_field(message, v=version)
    assert code_of(frames) == p.BAD_VERSION


@pytest.mark.parametrize("kind", ["NOPE", "hello", "", None, 3, ["HELLO"]])
def test_bad_kind(kind):
    assert code_of(with_field(p.Status(), kind=kind)) == p.BAD_KIND


@pytest.mark.parametrize("frames", [
    with_field(p.Cancel(job_id="j"), extra=1),
    without_field(p.Cancel(job_id="j"), "job_id"),
    with_field(p.Cancel(job_id="j"), job_id=5),
    with_field(p.Accepted(job_id="j", queue_position=1), queue_position=True),
    with_field(p.Accepted(job_id="j", queue_position=1), queue_position=1.5),
    with_field(p.Heartbeat(), time="now"),
    with_field(p.Progress(job_id="j", stage="msd", step=1, total=2), eta_s=float("nan")),
    with_field(p.Progress(job_id="j", stage="msd", step=1, total=2), losses={"a": "b"}),
    with_field(p.Progress(job_id="j", stage="msd", step=1, total=2), stage="dance"),
    with_field(p.Preview(job_id="j", stage="msd", animation=make_animation(1, 2)), stage="nope"),
    with_field(submit(), prompt="   "),
    with_field(submit(), prompt=""),
    with_field(submit(), prompt="x" * (p.MAX_PROMPT + 1)),
    with_field(submit(), seed=False),
    with_field(p.Error(code="internal", message="m"), code="kaboom"),
    with_field(p.Attached(job_id="j", state="done"), state="sleeping"),
    with_field(p.StatusReply(worker_version="1", device="cpu", models={}), running={"x": float("inf")}),
    with_field(p.StatusReply(worker_version="1", device="cpu", models={}), queue=[b"bytes"]),
    with_field(p.Result(job_id="j", animation=make_animation(1, 2)), animation={"fps": 1}),
    with_field(p.Result(job_id="j", animation=make_animation(1, 2)), loss_history={"a": [1, "x"]}),
], ids=["unknown-field", "missing-field", "wrong-type", "bool-where-int", "float-where-int", "str-where-float",
        "nan-float", "bad-loss-map", "bad-stage", "bad-preview-stage", "blank-prompt", "empty-prompt",
        "long-prompt", "bool-seed", "bad-error-code", "bad-job-state", "nonfinite-plain", "bytes-in-plain",
        "bad-animation-map", "bad-loss-history"])
def test_bad_field(frames):
    assert code_of(frames) == p.BAD_FIELD


def _submit_with_ref(field_name, **ref_changes):
    header, frames = header_and_frames(submit())
    header["splat"][field_name].update(ref_changes)
    return header, frames


@pytest.mark.parametrize("ref_change", [
    {"dtype": "<f8"}, {"dtype": ">f4"}, {"dtype": "|O"}, {"shape": [50]}, {"shape": [50, 3, 1]},
    {"shape": [50, 4]}, {"shape": [-1, 3]}, {"$nd": 99}, {"$nd": -1}, {"$nd": "0"},
], ids=["float64", "big-endian", "object", "rank-low", "rank-high", "width", "negative-dim", "missing-frame",
        "negative-frame", "str-frame"])
def test_bad_array_reference(ref_change):
    header, frames = _submit_with_ref("means", **ref_change)
    assert code_of(pack(header, frames)) == p.BAD_ARRAY


def test_bad_array_byte_length():
    header, frames = header_and_frames(submit())
    index = header["splat"]["means"]["$nd"]
    for bad in (frames[index][:-1], frames[index] + b"\0", b""):
        changed = list(frames)
        changed[index] = bad
        assert code_of(pack(header, changed)) == p.BAD_ARRAY


def test_frame_reused_is_bad_array():
    header, frames = header_and_frames(submit())
    header["splat"]["log_scales"]["$nd"] = header["splat"]["means"]["$nd"]  # same [N,3] float32 bytes
    assert code_of(pack(header, frames)) == p.BAD_ARRAY


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_array_is_bad_array(bad_value):
    header, frames = header_and_frames(p.Result(job_id="j", animation=make_animation(2, 5)))
    index = header["animation"]["delta_scale"]["$nd"]
    values = np.frombuffer(frames[index], np.float32).copy()
    values[7] = bad_value
    frames[index] = values.tobytes()
    assert code_of(pack(header, frames)) == p.BAD_ARRAY
    header, frames = header_and_frames(submit())
    index = header["splat"]["sh_rest"]["$nd"]
    values = np.frombuffer(frames[index], np.float32).copy()
    values[-1] = bad_value
    frames[index] = values.tobytes()
    assert code_of(pack(header, frames)) == p.BAD_ARRAY


def test_animation_disagreement_is_bad_array():
    anim = make_animation(2, 5)
    other = make_animation(2, 6)
    header, frames = header_and_frames(p.Result(job_id="j", animation=anim))
    header["animation"]["delta_scale"]["shape"] = [2, 6, 3]
    frames[header["animation"]["delta_scale"]["$nd"]] = other.delta_scale.tobytes()
    assert code_of(pack(header, frames)) == p.BAD_ARRAY


def test_preview_indices_must_match_animation():
    message = p.Preview(job_id="j", stage="msd", animation=make_animation(2, 5), indices=np.arange(6, dtype=np.int32))
    assert code_of(p.encode(message)) == p.BAD_ARRAY
    negative = p.Preview(job_id="j", stage="msd", animation=make_animation(2, 3), indices=np.array([0, -1, 2], np.int32))
    assert code_of(p.encode(negative)) == p.BAD_ARRAY


def test_bad_settings():
    assert code_of(with_field(submit(), settings={"preset": "nonexistent"})) == p.BAD_SETTINGS
    assert code_of(with_field(submit(), settings={"no_such_setting": 1})) == p.BAD_SETTINGS


def test_bad_splat():
    header, frames = header_and_frames(submit())
    index = header["splat"]["quats"]["$nd"]
    frames[index] = bytes(len(frames[index]))  # zero-length quaternions
    assert code_of(pack(header, frames)) == p.BAD_SPLAT
    empty = make_splat(0, degree=0)
    assert code_of(p.encode(submit(splat=empty))) == p.BAD_SPLAT
    header, frames = header_and_frames(submit())
    rest = header["splat"]["sh_rest"]
    rest["shape"] = [50, 5, 3]  # K must be 0, 3, 8 or 15
    frames[rest["$nd"]] = bytes(50 * 5 * 3 * 4)
    assert code_of(pack(header, frames)) == p.BAD_SPLAT


def test_too_large():
    small = p.Limits(max_gaussians=49)
    assert code_of(p.encode(submit()), small) == p.TOO_LARGE
    assert code_of(p.encode(p.Result(job_id="j", animation=make_animation(2, 50))), small) == p.TOO_LARGE
    assert code_of(p.encode(p.Result(job_id="j", animation=make_animation(5, 10))), p.Limits(max_frames=4)) == p.TOO_LARGE
    too_many = [*p.encode(p.Status()), *[b""] * (p.DEFAULT_LIMITS.max_array_frames + 1)]
    assert code_of(too_many) == p.TOO_LARGE
    assert code_of(with_field(p.Cancel(job_id="j"), job_id="x" * 20_000)) == p.TOO_LARGE
    header, frames = header_and_frames(submit())
    header["splat"]["means"]["shape"] = [10**12, 3]
    assert code_of(pack(header, frames)) == p.TOO_LARGE


def test_limits_accept_a_splat_at_the_limit():
    assert p.decode(p.encode(submit()), p.Limits(max_gaussians=50)).splat.count == 50


def test_protocol_error_message_is_one_line():
    err = p.ProtocolError(p.BAD_FIELD, "first line\nsecond\tline  ")
    assert err.message == "first line second line"
    assert err.code == p.BAD_FIELD and str(err).startswith("bad_field: ")
    reply = p.error_reply(err, job_id="j")
    assert reply == p.Error(code=p.BAD_FIELD, message="first line second line", job_id="j")


def test_encode_rejects_non_messages():
    with pytest.raises(TypeError):
        p.encode({"kind": "HELLO"})


def test_huge_finite_values_are_accepted_and_nan_among_them_is_not():
    """The fast finiteness check must not mistake a float32 sum overflow for a non-finite value."""
    anim = make_animation(2, 50)
    huge = np.full_like(anim.delta_position, 3e38)
    out = p.decode(p.encode(p.Result(job_id="j", animation=Animation(huge, anim.delta_rotation, anim.delta_scale))))
    assert_same(huge, out.animation.delta_position)
    header, frames = header_and_frames(p.Result(job_id="j", animation=Animation(huge, anim.delta_rotation,
                                                                                 anim.delta_scale)))
    index = header["animation"]["delta_position"]["$nd"]
    values = np.frombuffer(frames[index], np.float32).copy()
    values[-1] = np.nan
    frames[index] = values.tobytes()
    assert code_of(pack(header, frames)) == p.BAD_ARRAY
