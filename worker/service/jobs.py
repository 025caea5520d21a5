"""Jobs and the thread that runs them, one at a time, on the worker's device.

The job thread never touches a socket: it reports through ``Outbox.post`` and stores the final
outcome on the ``Job``, so the loop thread can replay it to a client that attaches later.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from animus3d_shared.settings import JobSettings
from animus3d_shared.splat import GaussianSplat

from ..events import JobCancelled, JobEvents, JobResult, Progress
from .logs import job_logger

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)

# A runner turns a job into a result, reporting through events (the real one calls run_job).
JobRunner = Callable[["Job", JobEvents], JobResult]


@dataclass
class Job:
    """One submitted job. ``owner`` (a ROUTER identity) is changed only by the loop thread."""

    splat: GaussianSplat
    prompt: str
    settings: JobSettings
    static_prompt: str | None
    seed: int
    owner: bytes
    submitter: bytes
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = QUEUED
    cancel_event: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    result: JobResult | None = None
    error: tuple[str, str] | None = None  # (code, message) when FAILED
    latest_progress: Progress | None = None  # written by the job thread, read by the loop
    progress_serial: int = 0  # bumps on every progress update
    last_stage: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def summary(self) -> dict[str, Any]:
        p = self.latest_progress
        return {
            "job_id": self.id,
            "state": self.state,
            "prompt": self.prompt,
            "preset": self.settings.preset,
            "gaussians": self.splat.count,
            "stage": p.stage if p else None,
            "step": p.step if p else 0,
            "total": p.total if p else 0,
        }


# Events the job thread posts to the loop thread.
@dataclass(frozen=True)
class StageChanged:
    job_id: str


@dataclass(frozen=True)
class PreviewReady:
    job_id: str
    animation: Any
    stage: str
    step: int = 0
    indices: Any = None  # int32 [M] for a subsampled preview, None when it covers every Gaussian


@dataclass(frozen=True)
class JobFinished:
    job_id: str


class JobQueue:
    """All jobs the worker knows (queued, running, and finished ones kept for a TTL)."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._pending: collections.deque[str] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.running: Job | None = None

    def add(self, job: Job) -> int:
        """Queues ``job``; returns its position (0: it runs next/now, 1: one job ahead, …)."""
        with self._cond:
            self.jobs[job.id] = job
            self._pending.append(job.id)
            position = len(self._pending) - 1 + (1 if self.running is not None else 0)
            self._cond.notify_all()
            return position

    def position(self, job: Job) -> int:
        with self._cond:
            if job.state != QUEUED or job.id not in self._pending:
                return 0
            return list(self._pending).index(job.id) + (1 if self.running is not None else 0)

    def queued(self) -> list[Job]:
        with self._cond:
            return [self.jobs[j] for j in self._pending]

    def take(self, timeout: float) -> Job | None:
        """Job thread: the next queued job (now RUNNING), or None on timeout/close."""
        with self._cond:
            end = time.monotonic() + timeout
            while not self._pending and not self._closed:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if self._closed:
                return None
            job = self.jobs[self._pending.popleft()]
            job.state = RUNNING
            job.started_at = time.monotonic()
            self.running = job
            return job

    def remove_queued(self, job: Job) -> bool:
        """Drops a job that has not started. False if it is already running or finished."""
        with self._cond:
            if job.id in self._pending:
                self._pending.remove(job.id)
                job.state = CANCELLED
                job.finished_at = time.monotonic()
                return True
            return False

    def mark_finished(self, job: Job, state: str) -> None:
        with self._cond:
            job.state = state
            job.finished_at = time.monotonic()
            if self.running is job:
                self.running = None

    def unfinished_for(self, submitter: bytes) -> int:
        with self._cond:
            return sum(1 for j in self.jobs.values() if j.submitter == submitter and not j.finished)

    def expire(self, ttl_s: float, now: float | None = None) -> list[str]:
        """Forgets finished jobs older than ``ttl_s``; returns their ids."""
        now = time.monotonic() if now is None else now
        with self._cond:
            old = [j.id for j in self.jobs.values() if j.finished and j.finished_at is not None
                   and now - j.finished_at > ttl_s]
            for job_id in old:
                del self.jobs[job_id]
            return old

    def close(self) -> list[Job]:
        """Stops handing out jobs; returns the queued ones (now CANCELLED)."""
        with self._cond:
            self._closed = True
            dropped = [self.jobs[j] for j in self._pending]
            self._pending.clear()
            for job in dropped:
                job.state = CANCELLED
                job.finished_at = time.monotonic()
            self._cond.notify_all()
            return dropped


def is_out_of_memory(exc: BaseException) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - the worker always has torch
        return isinstance(exc, MemoryError)
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError))


def free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class JobThread(threading.Thread):
    """Runs queued jobs one after another; a failing job never stops the thread."""

    def __init__(self, jobs: JobQueue, runner: JobRunner, post: Callable[[Any], None]) -> None:
        super().__init__(name="animus3d-job", daemon=True)
        self.jobs = jobs
        self.runner = runner
        self.post = post
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        running = self.jobs.running
        if running is not None:
            running.cancel_event.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            job = self.jobs.take(timeout=0.2)
            if job is not None:
                self.run_one(job)

    def run_one(self, job: Job) -> None:
        log = job_logger("animus3d.service.job", job.id)
        log.info("started", extra={"preset": job.settings.preset, "gaussians": job.splat.count})
        events = JobEvents(
            on_progress=lambda p: self._on_progress(job, p),
            on_preview=lambda animation, stage, step=0, indices=None: self.post(
                PreviewReady(job.id, animation, stage, step, indices)),
            cancel_event=job.cancel_event,
        )
        try:
            if job.cancel_event.is_set():
                raise JobCancelled()
            result = self.runner(job, events)
        except JobCancelled:
            self.jobs.mark_finished(job, CANCELLED)
            free_device_memory()
            log.info("cancelled", extra={"elapsed_s": round(time.monotonic() - job.started_at, 3)})
        except BaseException as exc:  # noqa: BLE001 - any failure becomes an ERROR for this job only
            oom = is_out_of_memory(exc)
            job.error = ("out_of_memory" if oom else "job_failed",
                         f"{'out of memory' if oom else 'job failed'}: {type(exc).__name__}: {exc}".strip())
            self.jobs.mark_finished(job, FAILED)
            free_device_memory()
            log.error("failed", extra={"error": type(exc).__name__, "detail": str(exc)[:300]},
                      exc_info=not oom)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            job.result = result
            self.jobs.mark_finished(job, DONE)
            log.info("done", extra={"elapsed_s": round(time.monotonic() - job.started_at, 3)})
        self.post(JobFinished(job.id))

    def _on_progress(self, job: Job, progress: Progress) -> None:
        job.latest_progress = progress
        job.progress_serial += 1
        if progress.stage != job.last_stage:
            job.last_stage = progress.stage
            self.post(StageChanged(job.id))
