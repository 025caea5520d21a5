"""The single-machine placement of the job runner: one long-lived child process that runs jobs.

The child (``multiprocessing`` ``spawn`` context) loads models once and keeps them cached in its
``PriorCache`` across jobs. Parent and child exchange protocol messages encoded with
``encode_single`` over a ``multiprocessing`` pipe's ``send_bytes``/``recv_bytes`` (no pickle of job
data): SUBMIT (``tag`` = job id) and CANCEL go down; PROGRESS, PREVIEW and the outcome come up.

A job that does not stop within ``cancel_grace_s`` of a cancel, or runs past its time limit, is
ended by killing the child; the next job gets a fresh child (started at once, so its imports
overlap the wait). A child that dies on its own ends its job with ``job_failed``.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from animus3d_shared import protocol as p

from .runner import JobWork, RunnerEvent

PROGRESS_MIN_INTERVAL_S = 0.1  # the child sends a stage's progress at most this often (latest wins)


@dataclass(frozen=True)
class ChildSpec:
    """How to start a child: the job function (``module:function``) and its fixed arguments."""

    target: str = "animus3d_worker.service.process_runner:run_pipeline"
    device: str = "cpu"
    models: Any = None  # a ModelConfig (our own object, pickled by multiprocessing at spawn)
    max_gaussians: int = 2_000_000


@dataclass
class _Running:
    work: JobWork
    started_at: float
    cancel_at: float | None = None  # when a cancel was sent
    end_reason: str | None = None  # why it is being stopped: "cancelled" | "timed_out" | "shutting_down"


@dataclass
class _Child:
    process: Any
    conn: Any
    generation: int
    events: "queue.SimpleQueue[tuple[int, Any]]" = field(default_factory=queue.SimpleQueue)


class ProcessRunner:
    """A ``JobRunner`` with capacity 1 backed by a child process (see the module docstring)."""

    capacity = 1

    def __init__(self, spec: ChildSpec, wake: Callable[[], None] = lambda: None, *,
                 cancel_grace_s: float = 2.0) -> None:
        self.spec = spec
        self.wake = wake
        self.cancel_grace_s = cancel_grace_s
        self.limits = p.Limits(max_gaussians=spec.max_gaussians)
        self._ctx = multiprocessing.get_context("spawn")
        self._generation = 0
        self._child: _Child | None = None
        self._job: _Running | None = None
        self._pending: list[RunnerEvent] = []
        self._closing = False
        self._ensure_child()

    @property
    def running(self) -> set[str]:
        return {self._job.work.job_id} if self._job is not None else set()

    @property
    def child_pid(self) -> int | None:
        return self._child.process.pid if self._child is not None else None

    # ---- commands -----------------------------------------------------------------------------
    def start(self, work: JobWork) -> None:
        if self._job is not None:
            raise RuntimeError("this runner already runs a job")
        child = self._ensure_child()
        self._job = _Running(work, time.monotonic())
        submit = work.submit
        message = p.Submit(splat=submit.splat, prompt=submit.prompt, static_prompt=submit.static_prompt,
                           settings=submit.settings, seed=submit.seed, tag=work.job_id)
        if not self._send(child, message):
            self._end(work.job_id, p.Error(code="job_failed", message="job failed: the job process is gone",
                                           job_id=work.job_id))

    def cancel(self, job_id: str, reason: str = "cancelled") -> None:
        job = self._job
        if job is None or job.work.job_id != job_id or job.cancel_at is not None:
            return
        job.cancel_at = time.monotonic()
        job.end_reason = reason
        if self._child is not None:
            self._send(self._child, p.Cancel(job_id=job_id))

    def kill(self, job_id: str, reason: str = "cancelled", *, respawn: bool = True) -> None:
        job = self._job
        if job is None or job.work.job_id != job_id:
            return
        self._kill_child()
        self._end(job_id, self._stopped_message(job_id, reason))
        if respawn:
            self._ensure_child()

    def poll(self, now: float) -> list[RunnerEvent]:
        """Everything the child reported, plus the ends of jobs this call had to stop."""
        child = self._child
        if child is not None:
            while True:
                try:
                    generation, item = child.events.get_nowait()
                except queue.Empty:
                    break
                self._on_child_item(generation, item)
        job = self._job
        if job is not None:
            if job.cancel_at is not None and now - job.cancel_at >= self.cancel_grace_s:
                self.kill(job.work.job_id, job.end_reason or "cancelled", respawn=not self._closing)
            elif job.cancel_at is None and now - job.started_at >= job.work.time_limit_s:
                self.cancel(job.work.job_id, "timed_out")
        events, self._pending = self._pending, []
        return events

    def close(self, grace_s: float) -> list[RunnerEvent]:
        """Cancels the running job, waits up to ``grace_s`` for it to stop, then ends the child."""
        events: list[RunnerEvent] = []
        self._closing = True
        job = self._job
        if job is not None:
            self.cancel(job.work.job_id, "shutting_down")
            deadline = time.monotonic() + grace_s
            while self._job is not None and time.monotonic() < deadline:
                time.sleep(0.02)
                events.extend(self.poll(time.monotonic()))
            if self._job is not None:
                self.kill(self._job.work.job_id, "shutting_down", respawn=False)
        events.extend(self._pending)
        self._pending = []
        self._stop_child()
        return events

    # ---- the child ------------------------------------------------------------------------------
    def _ensure_child(self) -> _Child:
        if self._child is not None and self._child.process.is_alive():
            return self._child
        self._generation += 1
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=child_main, args=(child_end, self.spec), daemon=True,
                                    name=f"animus3d-job-{self._generation}")
        process.start()
        child_end.close()
        child = _Child(process, parent_end, self._generation)
        threading.Thread(target=self._read, args=(child,), daemon=True, name="animus3d-job-reader").start()
        self._child = child
        return child

    def _read(self, child: _Child) -> None:
        """Reader thread: decodes what the child sends; posts (generation, message | exit code)."""
        while True:
            try:
                data = child.conn.recv_bytes()
            except (EOFError, OSError):
                child.process.join(5.0)
                child.events.put((child.generation, ("exit", child.process.exitcode)))
                self.wake()
                return
            try:
                item = p.decode_single(data, self.limits)
            except p.ProtocolError as exc:
                item = ("bad", exc)
            child.events.put((child.generation, item))
            self.wake()

    def _on_child_item(self, generation: int, item: Any) -> None:
        job = self._job
        if self._child is None or generation != self._child.generation:
            return  # from a child that was killed: its job already ended
        if isinstance(item, tuple) and item[0] == "exit":
            self._child = None
            if job is not None:
                code = item[1]
                if job.end_reason is not None:
                    self._end(job.work.job_id, self._stopped_message(job.work.job_id, job.end_reason))
                else:
                    self._end(job.work.job_id, p.Error(
                        code="job_failed", message=f"job failed: its process exited (code {code})",
                        job_id=job.work.job_id))
            self._ensure_child()
            return
        if job is None:
            return
        job_id = job.work.job_id
        if isinstance(item, tuple) and item[0] == "bad":
            exc = item[1]
            message = p.Error(code="job_failed", message=f"job failed: its output was refused: {exc.message}",
                              job_id=job_id)
            self.kill(job_id, "job_failed")
            self._pending[-1] = RunnerEvent(job_id, message)
            return
        if getattr(item, "job_id", None) != job_id:
            return
        if isinstance(item, p.Error) and job.end_reason in ("timed_out", "shutting_down") \
                and item.code == "job_failed":
            item = self._stopped_message(job_id, job.end_reason)
        if isinstance(item, p.Cancelled) and job.end_reason in ("timed_out", "shutting_down"):
            item = self._stopped_message(job_id, job.end_reason)
        if isinstance(item, (p.Result, p.Error, p.Cancelled)):
            self._end(job_id, item)
        else:
            self._pending.append(RunnerEvent(job_id, item))

    def _stopped_message(self, job_id: str, reason: str) -> Any:
        if reason == "timed_out":
            return p.Error(code="timed_out", message=f"the job ran past its time limit of "
                                                     f"{self._job.work.time_limit_s:.0f} s" if self._job else
                           "the job ran past its time limit", job_id=job_id)
        if reason == "shutting_down":
            return p.Error(code="shutting_down", message="the worker is shutting down", job_id=job_id)
        if reason == "job_failed":
            return p.Error(code="job_failed", message="job failed", job_id=job_id)
        return p.Cancelled(job_id=job_id)

    def _end(self, job_id: str, message: Any) -> None:
        self._pending.append(RunnerEvent(job_id, message))
        if self._job is not None and self._job.work.job_id == job_id:
            self._job = None

    def _send(self, child: _Child, message: Any) -> bool:
        try:
            child.conn.send_bytes(p.encode_single(message))
            return True
        except (OSError, ValueError):
            return False

    def _kill_child(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        child.process.kill()
        child.process.join(5.0)
        child.conn.close()

    def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        try:
            child.conn.close()  # the child sees EOF and exits
        except OSError:
            pass
        child.process.join(2.0)
        if child.process.is_alive():
            child.process.kill()
            child.process.join(5.0)


# ---- inside the child ---------------------------------------------------------------------------
def child_main(conn, spec: ChildSpec) -> None:
    """The child's main: a reader thread takes SUBMIT/CANCEL; this thread runs jobs one at a time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    import importlib

    module_name, _, function_name = spec.target.partition(":")
    run = getattr(importlib.import_module(module_name), function_name)
    limits = p.Limits(max_gaussians=spec.max_gaussians)
    send_lock = threading.Lock()
    jobs: "queue.SimpleQueue[p.Submit | None]" = queue.SimpleQueue()
    current: dict[str, Any] = {"job_id": None, "cancel": threading.Event()}

    def send(message: Any) -> None:
        data = p.encode_single(message)
        with send_lock:
            conn.send_bytes(data)

    def read() -> None:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                os._exit(0)  # the parent is gone: nobody is left to report to
            try:
                message = p.decode_single(data, limits)
            except p.ProtocolError:
                continue
            if isinstance(message, p.Submit):
                jobs.put(message)
            elif isinstance(message, p.Cancel) and message.job_id == current["job_id"]:
                current["cancel"].set()

    threading.Thread(target=read, daemon=True, name="animus3d-child-reader").start()
    state: dict[str, Any] = {}
    while True:
        submit = jobs.get()
        job_id = submit.tag
        current["cancel"] = threading.Event()
        current["job_id"] = job_id
        send(_run_one(run, submit, job_id, current["cancel"], send, spec, state))
        current["job_id"] = None


def _run_one(run, submit: p.Submit, job_id: str, cancel: threading.Event, send, spec: ChildSpec,
             state: dict) -> Any:
    from ..events import JobCancelled, JobEvents

    last = {"stage": None, "sent": 0.0, "latest": None}

    def on_progress(progress) -> None:
        message = p.Progress(job_id=job_id, stage=progress.stage, step=int(progress.step),
                             total=int(progress.total), losses={k: float(v) for k, v in progress.losses.items()
                                                                if _finite(v)},
                             eta_s=float(progress.eta_s) if progress.eta_s is not None and _finite(progress.eta_s)
                             else None, message=progress.message[:1000])
        now = time.monotonic()
        last["latest"] = message
        if progress.stage != last["stage"] or now - last["sent"] >= PROGRESS_MIN_INTERVAL_S:
            last["stage"], last["sent"] = progress.stage, now
            send(message)
            last["latest"] = None

    def on_preview(animation, stage, step=0, indices=None) -> None:
        send(p.Preview(job_id=job_id, stage=stage, animation=animation, step=int(step), indices=indices))

    events = JobEvents(on_progress=on_progress, on_preview=on_preview, cancel_event=cancel)
    try:
        events.check_cancelled()
        result = run(submit, events, spec, state)
    except JobCancelled:
        return p.Cancelled(job_id=job_id)
    except BaseException as exc:  # noqa: BLE001 - any failure ends this job only
        oom = _is_out_of_memory(exc)
        _free_device_memory()
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        return p.Error(code="out_of_memory" if oom else "job_failed",
                       message=f"{'out of memory' if oom else 'job failed'}: {text}", job_id=job_id)
    if last["latest"] is not None:
        send(last["latest"])
    return p.Result(job_id=job_id, animation=result.animation, settings=result.settings, seed=result.seed,
                    prompt=result.prompt, static_prompt=result.static_prompt,
                    motion_prompt=str(getattr(result, "motion_prompt", "")), device=result.device,
                    timings={k: float(v) for k, v in result.timings.items()},
                    losses={k: float(v) for k, v in result.losses.items() if _finite(v)},
                    loss_history={k: [float(x) for x in v if _finite(x)] for k, v in result.loss_history.items()},
                    warnings=[str(w) for w in getattr(result, "warnings", ())])


def run_pipeline(submit: p.Submit, events, spec: ChildSpec, state: dict):
    """The real job: ``run_job`` on the child's device with a prior cache kept for the child's life."""
    from animus3d_shared.settings import JobSettings

    from ..pipeline import PriorCache, run_job

    priors = state.setdefault("priors", PriorCache())
    settings = JobSettings.from_dict(submit.settings)
    return run_job(submit.splat, submit.prompt, settings, static_prompt=submit.static_prompt or None,
                   seed=submit.seed, device=spec.device, models=spec.models, events=events, priors=priors)


def _finite(value: Any) -> bool:
    try:
        return value == value and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False


def _is_out_of_memory(exc: BaseException) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - the worker always has torch
        return isinstance(exc, MemoryError)
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError))


def _free_device_memory() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
