"""The worker service's settings: what the `animus3d worker` flags fill in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..models import ModelConfig

DEFAULT_BIND = "tcp://127.0.0.1:5555"
# Bytes per Gaussian of the largest array frame (sh_rest at SH degree 3: 15 x 3 float32).
_LARGEST_FRAME_BYTES_PER_GAUSSIAN = 15 * 3 * 4


@dataclass(frozen=True)
class ServiceConfig:
    bind: str = DEFAULT_BIND
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    models: ModelConfig = field(default_factory=ModelConfig)
    keys_dir: Path | None = None
    max_gaussians: int = 2_000_000
    max_queued_per_client: int = 4  # unfinished jobs (queued or running) per client identity
    result_ttl_s: float = 3600.0
    preview_every: int | None = None  # default for jobs whose settings leave preview_every out
    heartbeat_interval_s: float = 2.0
    progress_min_interval_s: float = 0.25  # coalesce pipeline progress to at most this rate
    progress_max_interval_s: float = 1.0  # and repeat the latest at least this often

    def __post_init__(self) -> None:
        if self.max_gaussians < 1:
            raise ValueError("max_gaussians must be at least 1")
        if self.max_queued_per_client < 1:
            raise ValueError("max_queued_per_client must be at least 1")
        if self.result_ttl_s <= 0:
            raise ValueError("result_ttl_s must be positive")
        if self.preview_every is not None and self.preview_every < 0:
            raise ValueError("preview_every must be 0 or more")

    @property
    def max_message_bytes(self) -> int:
        """ZMQ_MAXMSGSIZE for one frame: twice what the Gaussian limit needs, plus headroom.

        Splats somewhat above ``max_gaussians`` still arrive and get a ``too_large`` ERROR;
        absurd frames are dropped by ZeroMQ itself (it disconnects that peer).
        """
        return 2 * self.max_gaussians * _LARGEST_FRAME_BYTES_PER_GAUSSIAN + (1 << 20)
