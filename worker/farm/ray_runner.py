"""The farm's placement of the job runner: each slot a Ray actor somewhere in the cluster.

``RaySlotRunner`` implements ``service.runner.JobRunner`` for ``WorkerService``: the front keeps its
queue, ownership, store and limits; ``capacity`` is the number of slots, and each started job goes
to an idle slot's actor. The runner never blocks the front's loop: ``poll`` only collects Ray
calls that are already done (``ray.wait(timeout=0)``) and issues the next long-poll for events.

Faults: an actor that dies mid-job (its process killed, its node lost) makes its ``run`` call fail
with a Ray actor error; the job then ends with ERROR ``job_failed`` (or runs again on a fresh actor
when ``retries`` allows), and the slot gets a new actor. A cancel the job ignores for
``cancel_grace_s``, and a job past its time limit, end with ``ray.kill`` of the actor.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from animus3d_shared import protocol as p

from ..service.process_runner import ChildSpec
from ..service.runner import JobWork, RunnerEvent

EVENT_WAIT_S = 0.5  # how long one next_events call waits in the actor for something to report


@dataclass(frozen=True)
class SlotShape:
    """What one slot holds in the cluster: ``num_gpus`` may be a fraction (several jobs per card)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass
class _Job:
    work: JobWork
    started_at: float
    attempts: int = 1
    cancel_at: float | None = None
    end_reason: str | None = None


@dataclass
class _Slot:
    index: int
    actor: Any = None
    job: _Job | None = None
    run_ref: Any = None
    events_ref: Any = None


class RaySlotRunner:
    """A ``JobRunner`` whose ``capacity`` slots are Ray actors (see the module docstring)."""

    def __init__(self, spec: ChildSpec, slots: int, shape: SlotShape, wake: Callable[[], None] = lambda: None, *,
                 cancel_grace_s: float = 2.0, retries: int = 0, namespace: str = "animus3d") -> None:
        import ray

        from .actor import JobActor

        if slots < 1:
            raise ValueError("a farm needs at least one slot")
        self._ray = ray
        self._actor_class = ray.remote(max_concurrency=4)(JobActor)
        self.spec = spec
        self.shape = shape
        self.capacity = slots
        self.wake = wake
        self.cancel_grace_s = cancel_grace_s
        self.retries = retries
        self.namespace = namespace
        self.limits = p.Limits(max_gaussians=spec.max_gaussians)
        self._generation = 0
        self._front = uuid.uuid4().hex[:8]  # actor names stay unique with several fronts on one cluster
        self._slots = [_Slot(i) for i in range(slots)]
        self._pending: list[RunnerEvent] = []
        for slot in self._slots:
            self._new_actor(slot)

    # ---- JobRunner --------------------------------------------------------------------------
    @property
    def running(self) -> set[str]:
        return {s.job.work.job_id for s in self._slots if s.job is not None}

    def start(self, work: JobWork) -> None:
        slot = next((s for s in self._slots if s.job is None), None)
        if slot is None:
            raise RuntimeError("every farm slot runs a job")
        slot.job = _Job(work, time.monotonic())
        self._launch(slot)

    def cancel(self, job_id: str, reason: str = "cancelled") -> None:
        slot = self._slot_of(job_id)
        if slot is None or slot.job.cancel_at is not None:
            return
        slot.job.cancel_at = time.monotonic()
        slot.job.end_reason = reason
        slot.actor.cancel.remote(job_id)

    def kill(self, job_id: str, reason: str = "cancelled") -> None:
        slot = self._slot_of(job_id)
        if slot is None:
            return
        limit = slot.job.work.time_limit_s
        self._replace_actor(slot)
        self._end(slot, stopped_message(job_id, reason, limit))

    def poll(self, now: float) -> list[RunnerEvent]:
        for slot in self._slots:
            if slot.job is not None:
                self._poll_slot(slot, now)
        events, self._pending = self._pending, []
        return events

    def close(self, grace_s: float) -> list[RunnerEvent]:
        for slot in self._slots:
            if slot.job is not None:
                self.cancel(slot.job.work.job_id, "shutting_down")
        deadline = time.monotonic() + grace_s
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
            self._pending.extend(self.poll(time.monotonic()))
        for slot in self._slots:
            if slot.job is not None:
                self.kill(slot.job.work.job_id, "shutting_down")
        events, self._pending = self._pending, []
        for slot in self._slots:
            self._ray.kill(slot.actor)
        return events

    # ---- what an operator or a test may ask ---------------------------------------------------
    def actor_of(self, job_id: str) -> Any:
        slot = self._slot_of(job_id)
        return slot.actor if slot is not None else None

    # ---- slots ----------------------------------------------------------------------------------
    def _new_actor(self, slot: _Slot) -> None:
        self._generation += 1
        slot.actor = self._actor_class.options(
            num_cpus=self.shape.num_cpus, num_gpus=self.shape.num_gpus, namespace=self.namespace,
            name=f"animus3d-slot-{self._front}-{slot.index}-{self._generation}", lifetime=None,
        ).remote(self.spec)

    def _replace_actor(self, slot: _Slot) -> None:
        self._ray.kill(slot.actor, no_restart=True)
        slot.run_ref = slot.events_ref = None
        self._new_actor(slot)

    def _launch(self, slot: _Slot) -> None:
        work = slot.job.work
        s = work.submit
        frame = p.encode_single(p.Submit(splat=s.splat, prompt=s.prompt, static_prompt=s.static_prompt,
                                         settings=s.settings, seed=s.seed, tag=work.job_id))
        slot.run_ref = slot.actor.run.remote(work.job_id, frame)
        slot.events_ref = slot.actor.next_events.remote(EVENT_WAIT_S)

    def _slot_of(self, job_id: str) -> _Slot | None:
        return next((s for s in self._slots if s.job is not None and s.job.work.job_id == job_id), None)

    def _poll_slot(self, slot: _Slot, now: float) -> None:
        ray = self._ray
        job = slot.job
        job_id = job.work.job_id
        refs = [r for r in (slot.events_ref, slot.run_ref) if r is not None]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if slot.events_ref is not None and slot.events_ref in ready:
            frames = self._get(slot.events_ref)
            slot.events_ref = slot.actor.next_events.remote(EVENT_WAIT_S) if frames is not None else None
            self._emit(slot, frames or [])
        if slot.run_ref is not None and slot.run_ref in ready:
            final = self._get(slot.run_ref)
            if final is None:
                self._on_actor_lost(slot)
                return
            rest = self._get(slot.actor.next_events.remote(0.0), timeout=5.0) or []
            self._emit(slot, rest)
            self._finish(slot, final)
            return
        if slot.events_ref is None and slot.run_ref is not None:
            return  # the events call failed: the run call reports the actor's loss next
        if job.cancel_at is not None and now - job.cancel_at >= self.cancel_grace_s:
            self.kill(job_id, job.end_reason or "cancelled")
        elif job.cancel_at is None and now - job.started_at >= job.work.time_limit_s:
            self.cancel(job_id, "timed_out")

    def _get(self, ref: Any, timeout: float | None = None) -> Any:
        """The call's value, or None when the actor died (or its node went away)."""
        ray = self._ray
        try:
            return ray.get(ref, timeout=timeout)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
                ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.GetTimeoutError, ray.exceptions.ObjectLostError):
            return None

    def _emit(self, slot: _Slot, frames: list[bytes]) -> None:
        job_id = slot.job.work.job_id
        for frame in frames:
            message = self._decode(frame)
            if isinstance(message, (p.Progress, p.Preview)) and message.job_id == job_id:
                self._pending.append(RunnerEvent(job_id, message))

    def _finish(self, slot: _Slot, final_frame: bytes) -> None:
        job = slot.job
        job_id = job.work.job_id
        message = self._decode(final_frame)
        if message is None or getattr(message, "job_id", None) != job_id \
                or not isinstance(message, (p.Result, p.Error, p.Cancelled)):
            message = p.Error(code="job_failed", message="job failed: its output was refused", job_id=job_id)
        elif job.end_reason in ("timed_out", "shutting_down") and isinstance(message, (p.Cancelled, p.Error)) \
                and not (isinstance(message, p.Error) and message.code == "out_of_memory"):
            message = stopped_message(job_id, job.end_reason, job.work.time_limit_s)
        slot.run_ref = slot.events_ref = None
        self._end(slot, message)

    def _on_actor_lost(self, slot: _Slot) -> None:
        job = slot.job
        job_id = job.work.job_id
        self._replace_actor(slot)
        if job.end_reason is not None:
            self._end(slot, stopped_message(job_id, job.end_reason, job.work.time_limit_s))
        elif job.attempts <= self.retries:
            job.attempts += 1
            self._launch(slot)
        else:
            self._end(slot, p.Error(code="job_failed", job_id=job_id,
                                    message="job failed: the Ray actor running it died (its process or node "
                                            "was lost)"))

    def _decode(self, frame: Any) -> Any:
        try:
            return p.decode_single(frame, self.limits)
        except (p.ProtocolError, TypeError):
            return None

    def _end(self, slot: _Slot, message: Any) -> None:
        self._pending.append(RunnerEvent(slot.job.work.job_id, message))
        slot.job = None


def stopped_message(job_id: str, reason: str, time_limit_s: float) -> Any:
    if reason == "timed_out":
        return p.Error(code="timed_out", message=f"the job ran past its time limit of {time_limit_s:.0f} s",
                       job_id=job_id)
    if reason == "shutting_down":
        return p.Error(code="shutting_down", message="the farm is shutting down", job_id=job_id)
    return p.Cancelled(job_id=job_id)
