"""How a running pipeline talks to whoever runs it (the service, or the CLI in --local mode).

The pipeline never knows about sockets: it calls ``JobEvents`` callbacks and polls
``JobEvents.check_cancelled()`` between steps, which raises ``JobCancelled``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from animus3d_shared.deformation import Animation

STAGES = ("load", "static_prior", "guide", "msd", "refine", "export")


class JobCancelled(Exception):
    """Raised inside the pipeline when its job was cancelled."""


@dataclass(frozen=True)
class Progress:
    stage: str  # one of STAGES
    step: int  # steps done in this stage
    total: int  # steps in this stage
    losses: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None  # estimated seconds left for the whole job
    message: str = ""


@dataclass
class JobEvents:
    """Callbacks from the pipeline. All optional; all called from the pipeline's thread."""

    on_progress: Callable[[Progress], None] | None = None
    # (animation so far, stage, step, indices): `indices` names the Gaussians a subsampled
    # preview covers (None = all of them)
    on_preview: Callable[..., None] | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def progress(self, progress: Progress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress)

    def preview(self, animation: Animation, stage: str, step: int = 0, indices=None) -> None:
        if self.on_preview is not None:
            self.on_preview(animation, stage, step, indices)

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled()


class EtaClock:
    """Estimates time left from the fraction of weighted work done."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def eta(self, fraction_done: float) -> float | None:
        if fraction_done <= 1e-6:
            return None
        elapsed = time.monotonic() - self.start
        return max(0.0, elapsed * (1.0 - fraction_done) / fraction_done)


@dataclass
class JobResult:
    """What one finished job produced: the animation plus what is needed to reproduce it."""

    animation: Animation
    settings: dict  # JobSettings.to_dict() as run
    seed: int
    prompt: str
    static_prompt: str
    device: str = "cpu"
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"
    losses: dict[str, float] = field(default_factory=dict)  # final value of each loss term
    loss_history: dict[str, list[float]] = field(default_factory=dict)  # per logged step
