"""The wire protocol between the Blender add-on / CLI and the worker (see docs/protocol.md).

A message is a ZeroMQ multipart message:

    frame 0      msgpack map: {"v": PROTOCOL_VERSION, "kind": "SUBMIT", <field>: <value>, …}
    frame 1..n   raw bytes of the numpy arrays, C order, little-endian

An array field holds ``{"$nd": i, "dtype": "<f4", "shape": [N, 3]}`` in the header; its bytes are
frame ``1 + i``. Encoding hands out memoryviews of the arrays (no copy) and decoding builds arrays
with ``np.frombuffer`` over the received frames (no copy; read-only). No pickle anywhere.

``decode`` validates everything — version, kind, field names and types, array dtypes, shapes, byte
lengths, frame use, finiteness, sizes — and raises ``ProtocolError(code, message)`` for anything
malformed, never another exception.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Sequence

import msgpack
import numpy as np

from .arrays import all_finite
from .deformation import Animation
from .settings import JobSettings, SettingsError
from .splat import ARRAY_FIELDS, GaussianSplat, SplatError

PROTOCOL_VERSION = 2
STAGES = ("load", "static_prior", "guide", "msd", "refine", "export")  # in job order; the worker's plan (worker/stages/plan.py) runs a subset
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")

# Error codes (Error.code). "unreachable" is made locally by the client, never sent.
BAD_MESSAGE = "bad_message"
BAD_VERSION = "bad_version"
BAD_KIND = "bad_kind"
BAD_FIELD = "bad_field"
BAD_ARRAY = "bad_array"
BAD_SETTINGS = "bad_settings"
BAD_SPLAT = "bad_splat"
TOO_LARGE = "too_large"
QUEUE_FULL = "queue_full"
UNKNOWN_JOB = "unknown_job"
JOB_FAILED = "job_failed"
OUT_OF_MEMORY = "out_of_memory"
UNAUTHORIZED = "unauthorized"
SHUTTING_DOWN = "shutting_down"
INTERNAL = "internal"
UNREACHABLE = "unreachable"
TIMED_OUT = "timed_out"
WORKER_RESTARTED = "worker_restarted"
TOO_COSTLY = "too_costly"
ERROR_CODES = (BAD_MESSAGE, BAD_VERSION, BAD_KIND, BAD_FIELD, BAD_ARRAY, BAD_SETTINGS, BAD_SPLAT, TOO_LARGE,
               QUEUE_FULL, UNKNOWN_JOB, JOB_FAILED, OUT_OF_MEMORY, UNAUTHORIZED, SHUTTING_DOWN, INTERNAL, UNREACHABLE,
               TIMED_OUT, WORKER_RESTARTED, TOO_COSTLY)

MAX_PROMPT = 1000
MAX_SEED = 2**63 - 1
MAX_TOKEN = 128  # characters of a client's ownership token


class ProtocolError(Exception):
    """A malformed message. ``code`` is one of ERROR_CODES; ``message`` is one line for a person."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = " ".join(str(message).split())


@dataclass(frozen=True)
class Limits:
    """What a decoder accepts. The worker configures max_gaussians; the rest rarely change."""

    max_gaussians: int = 2_000_000
    max_frames: int = 256
    max_string: int = 10_000
    max_header_bytes: int = 4 << 20
    max_array_bytes: int = 2 << 30
    max_array_frames: int = 32
    max_items: int = 10_000  # list/map entries in plain-data fields


DEFAULT_LIMITS = Limits()


# ---- message kinds --------------------------------------------------------------------------------
# Each field's annotation (a string, under `from __future__ import annotations`) is its wire type.
@dataclass(frozen=True)
class Hello:
    """client → worker: first message of a connection."""

    KIND: ClassVar[str] = "HELLO"
    protocol_version: int = PROTOCOL_VERSION
    client_name: str = ""
    client_version: str = ""


@dataclass(frozen=True)
class Welcome:
    """worker → client: answer to HELLO."""

    KIND: ClassVar[str] = "WELCOME"
    worker_version: str
    device: str
    models: "dict[str, str]"
    max_gaussians: int
    max_queued_per_client: int
    capabilities: "list[str]" = field(default_factory=lambda: ["preview", "attach", "cancel", "refine"])
    heartbeat_interval_s: float = 2.0
    protocol_version: int = PROTOCOL_VERSION
    instance_id: str = ""  # changes whenever the worker process restarts


@dataclass(frozen=True)
class Submit:
    """client → worker: animate ``splat`` from ``prompt``. ``static_prompt`` "" = derived by the worker."""

    KIND: ClassVar[str] = "SUBMIT"
    splat: GaussianSplat
    prompt: str
    static_prompt: str = ""
    settings: "dict[str, plain]" = field(default_factory=dict)
    seed: int = 0
    tag: str = ""
    token: str = ""  # the client's ownership token (ignored when CURVE keys identify the client)


@dataclass(frozen=True)
class Accepted:
    """worker → client: the job is queued."""

    KIND: ClassVar[str] = "ACCEPTED"
    job_id: str
    queue_position: int


@dataclass(frozen=True)
class Progress:
    """worker → client: at least once a second while a job runs."""

    KIND: ClassVar[str] = "PROGRESS"
    job_id: str
    stage: str
    step: int
    total: int
    losses: "dict[str, float]" = field(default_factory=dict)
    eta_s: "float | None" = None
    message: str = ""


@dataclass(frozen=True)
class Preview:
    """worker → client: the motion so far (every N steps). ``indices``: the Gaussians it covers (None = all)."""

    KIND: ClassVar[str] = "PREVIEW"
    job_id: str
    stage: str
    animation: Animation
    step: int = 0
    indices: "index_array | None" = None


@dataclass(frozen=True)
class Result:
    """worker → client: the finished animation of every Gaussian."""

    KIND: ClassVar[str] = "RESULT"
    job_id: str
    animation: Animation
    settings: "dict[str, plain]" = field(default_factory=dict)
    seed: int = 0
    prompt: str = ""
    static_prompt: str = ""
    motion_prompt: str = ""  # what the motion prior was conditioned on: the prompt, or how it was read
    device: str = ""
    timings: "dict[str, float]" = field(default_factory=dict)
    losses: "dict[str, float]" = field(default_factory=dict)
    loss_history: "dict[str, list[float]]" = field(default_factory=dict)
    warnings: "list[str]" = field(default_factory=list)  # notices for the artist (prompt not understood, …)


@dataclass(frozen=True)
class Error:
    """either way: something went wrong (``code`` in ERROR_CODES)."""

    KIND: ClassVar[str] = "ERROR"
    code: str
    message: str
    job_id: "str | None" = None


@dataclass(frozen=True)
class Cancel:
    """client → worker: stop a job."""

    KIND: ClassVar[str] = "CANCEL"
    job_id: str
    token: str = ""


@dataclass(frozen=True)
class Cancelled:
    """worker → client: the job stopped because it was cancelled."""

    KIND: ClassVar[str] = "CANCELLED"
    job_id: str


@dataclass(frozen=True)
class Status:
    """client → worker: ask for the worker's state."""

    KIND: ClassVar[str] = "STATUS"
    token: str = ""


@dataclass(frozen=True)
class StatusReply:
    """worker → client: version, device, models, the client's running jobs and the queue.

    ``running_jobs`` lists every running job of the client (a farm runs several at once);
    ``running`` is the first of them, for clients that show one."""

    KIND: ClassVar[str] = "STATUS_REPLY"
    worker_version: str
    device: str
    models: "dict[str, str]"
    running: "plain | None" = None
    queue: "list[plain]" = field(default_factory=list)
    kept_results: int = 0
    running_jobs: "list[plain]" = field(default_factory=list)


@dataclass(frozen=True)
class Attach:
    """client → worker: send this job's progress and result to me from now on."""

    KIND: ClassVar[str] = "ATTACH"
    job_id: str
    token: str = ""


@dataclass(frozen=True)
class Attached:
    """worker → client: answer to ATTACH; progress or the outcome follows."""

    KIND: ClassVar[str] = "ATTACHED"
    job_id: str
    state: str
    queue_position: "int | None" = None


@dataclass(frozen=True)
class Heartbeat:
    """either way: I am alive."""

    KIND: ClassVar[str] = "HEARTBEAT"
    time: float = field(default_factory=time.time)
    instance_id: str = ""  # the worker's (see WELCOME); "" from clients


MESSAGE_TYPES = (Hello, Welcome, Submit, Accepted, Progress, Preview, Result, Error, Cancel, Cancelled, Status,
                 StatusReply, Attach, Attached, Heartbeat)
_BY_KIND = {cls.KIND: cls for cls in MESSAGE_TYPES}
Message = Any  # one of MESSAGE_TYPES


def message_kinds() -> dict[str, type]:
    return dict(_BY_KIND)


def error_reply(code_or_exc: "str | ProtocolError", message: str = "", job_id: str | None = None) -> Error:
    if isinstance(code_or_exc, ProtocolError):
        return Error(code=code_or_exc.code, message=code_or_exc.message, job_id=job_id)
    return Error(code=code_or_exc, message=message, job_id=job_id)


# ---- encoding -------------------------------------------------------------------------------------
def _array_ref(array: np.ndarray, buffers: list) -> dict:
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    buffers.append(memoryview(array).cast("B") if array.size else b"")
    return {"$nd": len(buffers) - 1, "dtype": array.dtype.str, "shape": list(array.shape)}


def _encode_value(value: Any, buffers: list) -> Any:
    if isinstance(value, GaussianSplat):
        out = {name: _array_ref(arr, buffers) for name, arr in value.arrays().items()}
        if value.part_ids is not None:
            out["part_ids"] = _array_ref(value.part_ids.astype(np.int32), buffers)
            out["part_names"] = list(value.part_names)
        return out
    if isinstance(value, Animation):
        return {"delta_position": _array_ref(value.delta_position, buffers),
                "delta_rotation": _array_ref(value.delta_rotation, buffers),
                "delta_scale": _array_ref(value.delta_scale, buffers), "fps": float(value.fps)}
    if isinstance(value, np.ndarray):
        return _array_ref(value, buffers)
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _encode_value(v, buffers) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_value(v, buffers) for v in value]
    return value


def encode(message: Message) -> list:
    """Message → frames ``[header, *array buffers]`` (buffers are zero-copy memoryviews)."""
    if type(message) not in _BY_KIND.values():
        raise TypeError(f"not a protocol message: {type(message).__name__}")
    buffers: list = []
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "kind": message.KIND}
    for f in fields(message):
        header[f.name] = _encode_value(getattr(message, f.name), buffers)
    return [msgpack.packb(header, use_bin_type=True), *buffers]


def encode_single(message: Message) -> bytes:
    """The same message as one msgpack blob (arrays as bin), for files and tools."""
    return msgpack.packb([bytes(f) for f in encode(message)], use_bin_type=True)


def decode_single(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    try:
        frames = msgpack.unpackb(data, raw=False, max_array_len=limits.max_array_frames + 1)
    except Exception as exc:  # msgpack raises many types for garbage
        raise ProtocolError(BAD_MESSAGE, f"not a msgpack message ({type(exc).__name__})") from None
    if not isinstance(frames, list) or not all(isinstance(f, bytes) for f in frames):
        raise ProtocolError(BAD_MESSAGE, "a single-blob message must be a list of byte strings")
    return decode(frames, limits)


# ---- decoding -------------------------------------------------------------------------------------
def _as_buffer(frame: Any) -> memoryview:
    if hasattr(frame, "buffer"):  # zmq.Frame
        frame = frame.buffer
    try:
        view = memoryview(frame)
    except TypeError:
        raise ProtocolError(BAD_MESSAGE, f"frame of type {type(frame).__name__} is not a byte buffer") from None
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class _Decoder:
    def __init__(self, frames: Sequence[Any], limits: Limits):
        self.limits = limits
        self.buffers = [_as_buffer(f) for f in frames[1:]]
        self.used: set[int] = set()

    # -- arrays --
    def array(self, ref: Any, name: str, dtype: str, width: tuple[int | None, ...]) -> np.ndarray:
        if not isinstance(ref, dict) or set(ref) != {"$nd", "dtype", "shape"}:
            raise ProtocolError(BAD_ARRAY, f"{name} must be an array reference")
        index, dt, shape = ref["$nd"], ref["dtype"], ref["shape"]
        if not _is_int(index) or not 0 <= index < len(self.buffers):
            raise ProtocolError(BAD_ARRAY, f"{name} refers to a missing frame")
        if index in self.used:
            raise ProtocolError(BAD_ARRAY, f"{name} reuses frame {index + 1}")
        if dt != dtype:
            raise ProtocolError(BAD_ARRAY, f"{name} must have dtype {dtype}, got {dt!r}")
        if (not isinstance(shape, list) or len(shape) != len(width)
                or not all(_is_int(s) and s >= 0 for s in shape)):
            raise ProtocolError(BAD_ARRAY, f"{name} must have {len(width)} non-negative dimensions")
        for got, want in zip(shape, width):
            if want is not None and got != want:
                raise ProtocolError(BAD_ARRAY, f"{name} has shape {shape}; expected {_shape_text(width)}")
        itemsize = np.dtype(dtype).itemsize
        nbytes = itemsize * math.prod(shape)
        if nbytes > self.limits.max_array_bytes:
            raise ProtocolError(TOO_LARGE, f"{name} is {nbytes} bytes; the limit is {self.limits.max_array_bytes}")
        buffer = self.buffers[index]
        if buffer.nbytes != nbytes:
            raise ProtocolError(BAD_ARRAY, f"{name} should be {nbytes} bytes, its frame has {buffer.nbytes}")
        self.used.add(index)
        array = np.frombuffer(buffer, dtype=np.dtype(dtype)).reshape(shape)
        if array.dtype.kind == "f" and not all_finite(array):
            raise ProtocolError(BAD_ARRAY, f"{name} contains NaN or infinite values")
        return array

    def splat(self, value: Any, name: str) -> GaussianSplat:
        if not isinstance(value, dict):
            raise ProtocolError(BAD_FIELD, f"{name} must be a splat")
        allowed = set(ARRAY_FIELDS) | {"part_ids", "part_names"}
        extra = sorted(set(value) - allowed)
        missing = [f for f in ARRAY_FIELDS if f not in value]
        if extra or missing:
            raise ProtocolError(BAD_FIELD, f"{name}: missing {missing} / unknown {extra}")
        count_ref = value["means"]
        if isinstance(count_ref, dict) and isinstance(count_ref.get("shape"), list) and count_ref["shape"]:
            count = count_ref["shape"][0]
            if _is_int(count) and count > self.limits.max_gaussians:
                raise ProtocolError(TOO_LARGE, f"splat has {count} Gaussians; this worker takes at most "
                                               f"{self.limits.max_gaussians}")
        rest = value["sh_rest"]
        k = rest.get("shape", [0, 0])[1] if isinstance(rest, dict) and isinstance(rest.get("shape"), list) \
            and len(rest["shape"]) == 3 else None
        arrays = {
            "means": self.array(value["means"], "splat.means", "<f4", (None, 3)),
            "quats": self.array(value["quats"], "splat.quats", "<f4", (None, 4)),
            "log_scales": self.array(value["log_scales"], "splat.log_scales", "<f4", (None, 3)),
            "opacity_logits": self.array(value["opacity_logits"], "splat.opacity_logits", "<f4", (None,)),
            "sh_dc": self.array(value["sh_dc"], "splat.sh_dc", "<f4", (None, 3)),
            "sh_rest": self.array(value["sh_rest"], "splat.sh_rest", "<f4", (None, k, 3)),
        }
        part_ids = None
        part_names: tuple[str, ...] = ()
        if "part_ids" in value:
            part_ids = self.array(value["part_ids"], "splat.part_ids", "<i4", (None,))
            names = value.get("part_names", [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ProtocolError(BAD_FIELD, "splat.part_names must be a list of strings")
            part_names = tuple(names)
        try:
            return GaussianSplat.from_arrays(arrays, max_gaussians=self.limits.max_gaussians, part_ids=part_ids,
                                             part_names=part_names)
        except SplatError as exc:
            raise ProtocolError(BAD_SPLAT, str(exc)) from None

    def animation(self, value: Any, name: str) -> Animation:
        if not isinstance(value, dict) or set(value) != {"delta_position", "delta_rotation", "delta_scale", "fps"}:
            raise ProtocolError(BAD_FIELD, f"{name} must be an animation (delta_position, delta_rotation, "
                                           f"delta_scale, fps)")
        for key in ("delta_position", "delta_rotation", "delta_scale"):
            ref = value[key]
            shape = ref.get("shape") if isinstance(ref, dict) else None
            if isinstance(shape, list) and len(shape) == 3 and _is_int(shape[0]) and _is_int(shape[1]):
                if shape[0] > self.limits.max_frames or shape[1] > self.limits.max_gaussians:
                    raise ProtocolError(TOO_LARGE, f"{name}.{key} has shape {shape}; limits are "
                                                   f"{self.limits.max_frames} frames, {self.limits.max_gaussians} Gaussians")
        dp = self.array(value["delta_position"], f"{name}.delta_position", "<f4", (None, None, 3))
        dr = self.array(value["delta_rotation"], f"{name}.delta_rotation", "<f4", (None, None, 4))
        ds = self.array(value["delta_scale"], f"{name}.delta_scale", "<f4", (None, None, 3))
        fps = value["fps"]
        if not _is_number(fps):
            raise ProtocolError(BAD_FIELD, f"{name}.fps must be a number")
        try:
            return Animation(dp, dr, ds, float(fps))
        except ValueError as exc:
            raise ProtocolError(BAD_ARRAY, f"{name}: {exc}") from None

    # -- scalar and plain fields --
    def value(self, kind: str, value: Any, name: str) -> Any:
        lim = self.limits
        if kind.endswith(" | None"):
            return None if value is None else self.value(kind[: -len(" | None")], value, name)
        if kind == "str":
            if not isinstance(value, str):
                raise ProtocolError(BAD_FIELD, f"{name} must be a string")
            if len(value) > lim.max_string:
                raise ProtocolError(TOO_LARGE, f"{name} is longer than {lim.max_string} characters")
            return value
        if kind == "int":
            if not _is_int(value):
                raise ProtocolError(BAD_FIELD, f"{name} must be an integer")
            return value
        if kind == "float":
            if not _is_number(value) or not math.isfinite(value):
                raise ProtocolError(BAD_FIELD, f"{name} must be a finite number")
            return float(value)
        if kind == "GaussianSplat":
            return self.splat(value, name)
        if kind == "Animation":
            return self.animation(value, name)
        if kind == "index_array":
            return self.array(value, name, "<i4", (None,))
        if kind in ("dict[str, str]", "dict[str, float]", "dict[str, plain]", "dict[str, list[float]]"):
            if not isinstance(value, dict) or len(value) > lim.max_items:
                raise ProtocolError(BAD_FIELD, f"{name} must be a map of at most {lim.max_items} entries")
            inner = kind[len("dict[str, "):-1]
            return {self.value("str", k, f"{name} key"): self.value(inner, v, f"{name}[{k!r}]")
                    for k, v in value.items()}
        if kind == "list[float]" or kind == "list[str]" or kind == "list[plain]":
            if not isinstance(value, list) or len(value) > lim.max_items:
                raise ProtocolError(BAD_FIELD, f"{name} must be a list of at most {lim.max_items} items")
            inner = kind[len("list["):-1]
            return [self.value(inner, v, f"{name}[{i}]") for i, v in enumerate(value)]
        if kind == "plain":
            _check_plain(value, name, lim, depth=0)
            return value
        raise ProtocolError(INTERNAL, f"no decoder for field type {kind}")  # a bug in this module


def _check_plain(value: Any, name: str, limits: Limits, depth: int) -> None:
    """JSON-like data (None, bool, int, float, str, lists, string-keyed maps), bounded."""
    if depth > 6:
        raise ProtocolError(BAD_FIELD, f"{name} is nested too deeply")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProtocolError(BAD_FIELD, f"{name} contains a non-finite number")
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_plain(v, f"{name}[{i}]", limits, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProtocolError(BAD_FIELD, f"{name} has a non-string key")
            _check_plain(v, f"{name}.{k}", limits, depth + 1)
        return
    raise ProtocolError(BAD_FIELD, f"{name} holds unsupported data ({type(value).__name__})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shape_text(width: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("*" if w is None else str(w) for w in width) + "]"


def decode(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> Message:
    """Frames (bytes, memoryview or zmq.Frame; identity frames already stripped) → a validated message."""
    try:
        return _decode(frames, limits)
    except ProtocolError:
        raise
    except Exception as exc:  # a validation gap must still be a typed error, never a crash
        raise ProtocolError(BAD_MESSAGE, f"malformed message ({type(exc).__name__})") from None


def _decode(frames: Sequence[Any], limits: Limits) -> Message:
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ProtocolError(BAD_MESSAGE, "empty message")
    if len(frames) > limits.max_array_frames + 1:
        raise ProtocolError(TOO_LARGE, f"message has {len(frames)} frames; at most {limits.max_array_frames + 1}")
    head = _as_buffer(frames[0])
    if head.nbytes == 0:
        raise ProtocolError(BAD_MESSAGE, "empty header frame")
    if head.nbytes > limits.max_header_bytes:
        raise ProtocolError(TOO_LARGE, f"header is {head.nbytes} bytes; the limit is {limits.max_header_bytes}")
    try:
        header = msgpack.unpackb(head, raw=False, strict_map_key=True, max_str_len=limits.max_header_bytes,
                                 max_bin_len=limits.max_header_bytes, max_array_len=limits.max_items,
                                 max_map_len=limits.max_items, max_ext_len=0)
    except Exception as exc:
        raise ProtocolError(BAD_MESSAGE, f"header is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError(BAD_MESSAGE, "header must be a map")
    version = header.get("v")
    if version != PROTOCOL_VERSION or not _is_int(version):
        raise ProtocolError(BAD_VERSION, f"protocol version {version!r} is not supported (this side speaks "
                                         f"{PROTOCOL_VERSION}); update the add-on or the worker")
    kind = header.get("kind")
    cls = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(BAD_KIND, f"unknown message kind {str(kind)[:40]!r}")
    decoder = _Decoder(frames, limits)
    body = {k: v for k, v in header.items() if k not in ("v", "kind")}
    specs = {f.name: f for f in fields(cls)}
    unknown = sorted(set(body) - set(specs))
    if unknown:
        raise ProtocolError(BAD_FIELD, f"{kind} has unknown field(s): {', '.join(map(str, unknown))[:200]}")
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if name not in body:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ProtocolError(BAD_FIELD, f"{kind} is missing field {name!r}")
            continue
        values[name] = decoder.value(str(spec.type).strip("'\""), body[name], f"{kind}.{name}")
    unused = set(range(len(decoder.buffers))) - decoder.used
    if unused:
        raise ProtocolError(BAD_MESSAGE, f"{len(unused)} frame(s) are not referenced by the header")
    _check_semantics(cls, values)
    return cls(**values)


def _check_semantics(cls: type, values: dict[str, Any]) -> None:
    if cls is Submit:
        prompt = values["prompt"]
        if not prompt.strip() or len(prompt) > MAX_PROMPT:
            raise ProtocolError(BAD_FIELD, f"prompt must be 1 to {MAX_PROMPT} characters of text")
        if len(values.get("static_prompt", "")) > MAX_PROMPT:
            raise ProtocolError(BAD_FIELD, f"static_prompt must be at most {MAX_PROMPT} characters")
        try:
            JobSettings.from_dict(values.get("settings", {}))
        except SettingsError as exc:
            raise ProtocolError(BAD_SETTINGS, str(exc)) from None
        if values["splat"].count == 0:
            raise ProtocolError(BAD_SPLAT, "splat has no Gaussians")
        if not 0 <= values.get("seed", 0) <= MAX_SEED:
            raise ProtocolError(BAD_FIELD, f"seed must be an integer from 0 to {MAX_SEED}")
    if cls in (Submit, Cancel, Status, Attach) and len(values.get("token", "")) > MAX_TOKEN:
        raise ProtocolError(BAD_FIELD, f"token must be at most {MAX_TOKEN} characters")
    if cls in (Progress, Preview) and values.get("stage") not in STAGES:
        raise ProtocolError(BAD_FIELD, f"stage must be one of {', '.join(STAGES)}")
    if cls is Error and values.get("code") not in ERROR_CODES:
        raise ProtocolError(BAD_FIELD, f"unknown error code {str(values.get('code'))[:40]!r}")
    if cls is Attached and values.get("state") not in JOB_STATES:
        raise ProtocolError(BAD_FIELD, f"job state must be one of {', '.join(JOB_STATES)}")
    if cls is Preview and values.get("indices") is not None:
        idx, anim = values["indices"], values["animation"]
        if len(idx) != anim.num_gaussians:
            raise ProtocolError(BAD_ARRAY, "preview indices do not match the animation's Gaussian count")
        if idx.size and int(idx.min()) < 0:  # numpy would silently count a negative index from the end
            raise ProtocolError(BAD_ARRAY, "preview indices must be non-negative")
