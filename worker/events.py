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

from animus3d_shared.protocol import STAGES  # noqa: F401  (the one stage table; Progress.stage names one)


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
    """Estimates time left: within a stage from the pace of its own steps, before that from the fraction
    of weighted work done.

    The work weights are rough (a denoising step of the prior against a fit step of the renderer
    differs by device and splat size: on a CPU with a 24 000-Gaussian splat the fraction alone said
    10 s for a 3-minute fit), so once a stage has taken a step its own pace times the steps left, and
    that pace per unit of work times the later stages' work, is the estimate."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self._pace: tuple[str, int, float] | None = None  # (stage, first step seen, time then)

    def eta(self, fraction_done: float) -> float | None:
        if fraction_done <= 1e-6:
            return None
        elapsed = time.monotonic() - self.start
        return max(0.0, elapsed * (1.0 - fraction_done) / fraction_done)

    def stage_eta(self, stage: str, step: int, total: int, stage_work: float, later_work: float) -> float | None:
        """Seconds left when ``stage`` has done ``step`` of ``total`` steps that are ``stage_work`` units
        of work, and ``later_work`` units follow it; None until the stage has been seen to take a step."""
        now = time.monotonic()
        if self._pace is None or self._pace[0] != stage or step < self._pace[1]:
            self._pace = (stage, step, now)
            return None
        taken = step - self._pace[1]
        if taken <= 0 or total <= 0 or stage_work <= 0:
            return None
        per_step = (now - self._pace[2]) / taken
        return max(0.0, per_step * (total - step) + per_step * total / stage_work * later_work)


@dataclass
class JobResult:
    """What one finished job produced: the animation plus what is needed to reproduce it."""

    animation: Animation
    settings: dict  # JobSettings.to_dict() as run
    seed: int
    prompt: str
    static_prompt: str
    motion_prompt: str = ""  # what the motion prior was conditioned on: the prompt, or how it was read
    device: str = "cpu"
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"
    losses: dict[str, float] = field(default_factory=dict)  # final value of each loss term
    loss_history: dict[str, list[float]] = field(default_factory=dict)  # per logged step
    warnings: list[str] = field(default_factory=list)  # notices for the artist (``understanding``)
