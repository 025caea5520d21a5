"""The jobs a worker knows: queued, running, and finished ones kept until their TTL.

Only the server loop thread touches these objects. A finished job keeps its state and the size of
its stored outcome; the outcome itself lives in the job store (``store.py``).
"""

from __future__ import annotations

import collections
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from animus3d_shared import protocol as p
from animus3d_shared.settings import JobSettings

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Job:
    """One accepted job. ``identity`` owns it; ``route`` is the owner's socket its messages go to now;
    ``watchers`` are sockets of other (admin) identities that attached to or cancelled it, which get
    its messages too."""

    id: str
    identity: str
    route: bytes | None
    submit: Any  # p.Submit with resolved settings while unfinished; None once finished
    settings: JobSettings | None
    gaussians: int
    prompt: str
    state: str = QUEUED
    submitted_at: float = field(default_factory=time.time)  # wall clock (survives restarts)
    finished_at: float | None = None
    outcome_bytes: int = 0
    latest_progress: Any = None  # p.Progress
    progress_serial: int = 0
    last_stage: str | None = None
    watchers: set[bytes] = field(default_factory=set)

    def routes(self) -> list[bytes]:
        """Every socket the job's messages go to: the owner's latest, then the watching admins'."""
        owner = [self.route] if self.route is not None else []
        return owner + sorted(self.watchers - set(owner))

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def summary(self) -> dict[str, Any]:
        progress = self.latest_progress
        return {
            "job_id": self.id,
            "state": self.state,
            "prompt": self.prompt,
            "preset": self.settings.preset if self.settings is not None else None,
            "gaussians": self.gaussians,
            "stage": progress.stage if progress else None,
            "step": progress.step if progress else 0,
            "total": progress.total if progress else 0,
        }


class JobQueue:
    """All jobs the worker knows, with the order of the queued ones."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._pending: collections.deque[str] = collections.deque()

    def add(self, job: Job) -> int:
        """Queues ``job``; returns its position (0: it runs next/now, 1: one job ahead, …)."""
        self.jobs[job.id] = job
        self._pending.append(job.id)
        return self.position(job)

    def add_finished(self, job: Job) -> None:
        self.jobs[job.id] = job

    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state == RUNNING]

    def position(self, job: Job) -> int:
        if job.state != QUEUED or job.id not in self._pending:
            return 0
        return list(self._pending).index(job.id) + len(self.running())

    def queued(self) -> list[Job]:
        return [self.jobs[j] for j in self._pending]

    def next_queued(self) -> Job | None:
        """Takes the next queued job off the queue (now RUNNING)."""
        if not self._pending:
            return None
        job = self.jobs[self._pending.popleft()]
        job.state = RUNNING
        return job

    def remove_queued(self, job: Job) -> bool:
        """Takes a job that has not started off the queue. False if it is running or finished."""
        if job.id in self._pending:
            self._pending.remove(job.id)
            return True
        return False

    def unfinished_for(self, identity: str) -> int:
        return sum(1 for j in self.jobs.values() if j.identity == identity and not j.finished)

    def unfinished(self) -> int:
        return sum(1 for j in self.jobs.values() if not j.finished)

    def kept_bytes(self) -> int:
        return sum(j.outcome_bytes for j in self.jobs.values() if j.finished)

    def expire(self, ttl_s: float, max_bytes: int, now: float | None = None) -> list[str]:
        """Forgets finished jobs older than ``ttl_s``, then the oldest while kept outcomes exceed
        ``max_bytes``; returns their ids."""
        now = time.time() if now is None else now
        finished = sorted((j for j in self.jobs.values() if j.finished), key=lambda j: j.finished_at or 0.0)
        gone = [j.id for j in finished if now - (j.finished_at or now) > ttl_s]
        kept = [j for j in finished if j.id not in set(gone)]
        total = sum(j.outcome_bytes for j in kept)
        for job in kept:
            if total <= max_bytes:
                break
            gone.append(job.id)
            total -= job.outcome_bytes
        for job_id in gone:
            del self.jobs[job_id]
        return gone

    def drain_queued(self) -> list[Job]:
        """Empties the queue; returns the jobs that were waiting."""
        dropped = [self.jobs[j] for j in self._pending]
        self._pending.clear()
        return dropped


def is_final(message: Any) -> bool:
    return isinstance(message, (p.Result, p.Error, p.Cancelled))


def state_of(outcome: Any) -> str:
    if isinstance(outcome, p.Result):
        return DONE
    if isinstance(outcome, p.Cancelled):
        return CANCELLED
    return FAILED
