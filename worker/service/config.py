"""The worker service's settings: what the `animus3d worker` flags fill in, validated."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..models import ModelConfig

DEFAULT_BIND = "tcp://127.0.0.1:5555"
MAX_GAUSSIANS_LIMIT = 50_000_000
# Bytes per Gaussian of the largest array frame of a SUBMIT (sh_rest at SH degree 3: 15 x 3 float32).
_LARGEST_FRAME_BYTES_PER_GAUSSIAN = 15 * 3 * 4
_HEADER_CEILING = 4 << 20  # Limits.max_header_bytes


@dataclass(frozen=True)
class ServiceConfig:
    bind: str = DEFAULT_BIND
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    models: ModelConfig = field(default_factory=ModelConfig)
    keys_dir: Path | None = None
    state_dir: Path | None = None  # where the job store lives; None: a temporary one (not durable)
    max_gaussians: int = 2_000_000
    max_queued_per_client: int = 4  # unfinished jobs (queued or running) per identity
    max_queued_total: int = 64  # unfinished jobs of all identities together
    result_ttl_s: float = 3600.0
    max_result_bytes: int = 4 << 30  # kept outcomes, all jobs together (on disk)
    max_job_seconds: float = 6 * 3600.0  # wall-clock cap of any one job
    max_job_cost: float = 200_000.0  # admission cap on a job's estimated work (runner.job_cost)
    job_seconds_per_cost: float = 5.0  # a job's time limit: startup + this x its cost, at most the cap
    job_startup_s: float = 900.0
    cancel_grace_s: float = 2.0  # a cancelled job that goes on this long is killed
    admin_identities: frozenset[str] = frozenset()  # identities that see and may act on every job
    preview_every: int | None = None  # default for jobs whose settings leave preview_every out
    heartbeat_interval_s: float = 2.0
    progress_min_interval_s: float = 0.25  # coalesce pipeline progress to at most this rate
    progress_max_interval_s: float = 1.0  # and repeat the latest at least this often

    def __post_init__(self) -> None:
        _int_in("max_gaussians", self.max_gaussians, 1, MAX_GAUSSIANS_LIMIT)
        _int_in("max_queued_per_client", self.max_queued_per_client, 1, 10_000)
        _int_in("max_queued_total", self.max_queued_total, 1, 100_000)
        _int_in("max_result_bytes", self.max_result_bytes, 0, 1 << 50)
        _float_in("result_ttl_s", self.result_ttl_s, 1e-3, 1e9)
        _float_in("max_job_seconds", self.max_job_seconds, 1e-3, 1e9)
        _float_in("max_job_cost", self.max_job_cost, 0.0, 1e15)
        _float_in("job_seconds_per_cost", self.job_seconds_per_cost, 0.0, 1e6)
        _float_in("job_startup_s", self.job_startup_s, 0.0, 1e9)
        _float_in("cancel_grace_s", self.cancel_grace_s, 0.0, 3600.0)
        _float_in("heartbeat_interval_s", self.heartbeat_interval_s, 0.05, 3600.0)
        if self.preview_every is not None:
            _int_in("preview_every", self.preview_every, 0, 100_000)

    @property
    def max_message_bytes(self) -> int:
        """ZMQ_MAXMSGSIZE: the largest frame a SUBMIT at ``max_gaussians`` needs (or a full header).

        A bigger frame makes ZeroMQ drop that peer's connection before it is buffered, so a hostile
        message costs at most this much memory per frame.
        """
        return max(self.max_gaussians * _LARGEST_FRAME_BYTES_PER_GAUSSIAN, _HEADER_CEILING) + (64 << 10)


def _int_in(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _float_in(name: str, value: object, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ValueError(f"{name} must be a finite number from {low:g} to {high:g}, got {value!r}")
