"""The job runner: where accepted jobs run, seen from the server loop as start/cancel/kill/poll.

A runner *placement* runs jobs somewhere the server loop never waits on (a child process here; the
farm's actors elsewhere). The loop calls every method from its own thread and none of them blocks:

    runner.start(job_id, work)          # work: the job as a protocol SUBMIT (settings resolved)
    runner.cancel(job_id)               # ask politely; killed after ``cancel_grace_s`` if it goes on
    runner.kill(job_id, reason)         # stop it now; the job ends CANCELLED or with ERROR ``reason``
    for event in runner.poll(now):      # RunnerEvent(job_id, message), in order per job
        ...

Every started job ends with exactly one final event: a RESULT, an ERROR with the job id, or
CANCELLED. Before that it may report PROGRESS and PREVIEW messages. The messages are the protocol's
own dataclasses (``animus3d_shared.protocol``), so a placement that runs jobs in another process
sends them through the project's msgpack encoding, never pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from animus3d_shared import protocol as p
from animus3d_shared.settings import JobSettings

from ..stages.plan import GUIDE_DRAW_WORK_PER_STEP, guide_draw_rounds, msd_step_work, stage_plan

FINAL_MESSAGES = (p.Result, p.Error, p.Cancelled)


@dataclass(frozen=True)
class RunnerEvent:
    job_id: str
    message: Any  # p.Progress | p.Preview | p.Result | p.Error | p.Cancelled

    @property
    def final(self) -> bool:
        return isinstance(self.message, FINAL_MESSAGES)


@dataclass(frozen=True)
class JobWork:
    """What a placement needs to run one job: the submission with its settings resolved, and limits."""

    job_id: str
    submit: p.Submit  # settings: the full JobSettings.to_dict() the job runs with
    time_limit_s: float  # wall-clock seconds from start() before the job is stopped (``timed_out``)


class JobRunner(Protocol):
    """A placement of jobs. ``capacity`` jobs may run at once; ``running`` names them."""

    capacity: int

    @property
    def running(self) -> set[str]: ...

    def start(self, work: JobWork) -> None: ...

    def cancel(self, job_id: str) -> None: ...

    def kill(self, job_id: str, reason: str = "cancelled") -> None: ...

    def poll(self, now: float) -> list[RunnerEvent]: ...

    def close(self, grace_s: float) -> list[RunnerEvent]: ...


def job_time_limit(settings: dict, cap_s: float, seconds_per_unit: float, startup_s: float) -> float:
    """Wall-clock limit of a job: its estimated work (``job_cost``) at a slow pace, at most ``cap_s``."""
    return min(cap_s, startup_s + seconds_per_unit * job_cost(settings))


def job_cost(settings: dict) -> float:
    """A rough work estimate of a job in 'step units' (one MSD step of a 16-frame 256² clip = 1).

    Used for admission (refuse above the operator's cap) and for the wall-clock limit; it only needs
    to grow with everything that makes a job longer, not to be exact. Only the stages the job's plan
    runs count (``stages.plan.stage_plan``): a generate-then-fit preset fits no LoRA, whatever its
    ``lora_*`` settings say.
    """
    s = JobSettings.from_dict(settings)
    plan = stage_plan(s)
    pixels = (s.resolution / 256.0) ** 2
    frames = s.frames / 16.0
    cost = 0.0
    if "static_prior" in plan:
        cost += s.lora_steps * s.lora_batch * pixels * 1.5
    if "guide" in plan:
        # the draws, then the fit; with the yaw search the fit may run twice (from the turn and without it)
        fits = 2 if s.guide_yaw_search and s.global_motion else 1
        draws = s.guide_draws * guide_draw_rounds(s)
        cost += (s.guide_steps * 0.5 * fits + s.guide_denoise_steps * GUIDE_DRAW_WORK_PER_STEP * draws) \
            * frames * pixels
    if "msd" in plan:
        cost += s.msd_steps * pixels * frames * s.views_per_step * msd_step_work(s)
    if "refine" in plan:
        cost += s.refine_steps * 2.0 * frames * s.refine_frame_multiplier * pixels
    return cost
