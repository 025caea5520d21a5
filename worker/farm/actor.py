"""The Ray actor that runs jobs: one per farm slot, holding its share of a GPU (or CPUs).

It runs each job through the same job function as the single-machine worker's child process
(``process_runner._run_one`` with ``run_pipeline``), so the two placements share one job-running
code path and the actor keeps its prior cache for its whole life. Everything it hands back to the
front is a protocol message encoded with ``encode_single`` (msgpack, validated by the front):

    run(job_id, submit_frame)  -> the final message's frame (RESULT, ERROR or CANCELLED)
    next_events(wait_s)        -> PROGRESS/PREVIEW frames since the last call (waits up to wait_s)
    cancel(job_id)             -> asks the running job to stop at its next step

The actor is threaded (``max_concurrency``) so ``next_events`` and ``cancel`` reach it while
``run`` works.
"""

from __future__ import annotations

import os
import threading

from animus3d_shared import protocol as p

from ..service.process_runner import ChildSpec, _run_one, run_pipeline


class JobActor:
    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.limits = p.Limits(max_gaussians=spec.max_gaussians)
        self.state: dict = {}  # the prior cache lives here for the actor's life
        self._lock = threading.Condition()
        self._events: list[bytes] = []
        self._cancel = threading.Event()
        self._job_id: str | None = None

    def pid(self) -> int:
        return os.getpid()

    def current_job(self) -> str | None:
        return self._job_id

    def run(self, job_id: str, submit_frame: bytes) -> bytes:
        submit = p.decode_single(submit_frame, self.limits)
        if not isinstance(submit, p.Submit):
            return p.encode_single(p.Error(code="job_failed", message="job failed: not a SUBMIT", job_id=job_id))
        with self._lock:
            self._cancel = threading.Event()
            self._job_id = job_id
            self._events.clear()
        cancel = self._cancel
        try:
            final = _run_one(run_pipeline, submit, job_id, cancel, self._send, self.spec, self.state)
        finally:
            with self._lock:
                self._job_id = None
                self._lock.notify_all()
        return p.encode_single(final)

    def _send(self, message) -> None:
        frame = p.encode_single(message)
        with self._lock:
            self._events.append(frame)
            self._lock.notify_all()

    def next_events(self, wait_s: float) -> list[bytes]:
        with self._lock:
            if not self._events and self._job_id is not None:
                self._lock.wait(timeout=max(0.0, min(wait_s, 5.0)))
            events, self._events = self._events, []
        return events

    def cancel(self, job_id: str) -> None:
        with self._lock:
            if self._job_id == job_id:
                self._cancel.set()
