"""The worker's socket loop: a ROUTER serving many clients, never waiting on compute.

Threads:
- the loop thread (the caller of ``serve``) owns every socket and answers HELLO, STATUS,
  HEARTBEAT, ATTACH, CANCEL and SUBMIT at once;
- one job thread runs queued jobs on the worker's device and reports through the ``Outbox``;
- with CURVE keys, the ZAP authenticator thread from ``zmq.auth``.

Job messages go to the job's ``owner``: the latest client identity that submitted, attached to
or cancelled it. A client that vanishes leaves its job running; its result waits ``result_ttl_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import zmq

from animus3d_shared import protocol as p
from animus3d_shared.settings import JobSettings, SettingsError

from .. import __version__
from ..events import JobResult
from .config import ServiceConfig
from .jobs import (CANCELLED, DONE, FAILED, QUEUED, Job, JobFinished, JobQueue, JobRunner, JobThread,
                   PreviewReady, StageChanged)
from .logs import job_logger
from .outbox import Outbox
from .security import ServerKeys, apply_server_curve, require_keys_for, start_authenticator

log = logging.getLogger("animus3d.service")

MAX_MESSAGES_PER_TICK = 64
TICK_S = 0.05


def pipeline_runner(config: ServiceConfig, device: str) -> JobRunner:
    """The real runner: ``run_job`` with the worker's device, model config and a shared prior cache."""
    from ..pipeline import PriorCache, run_job

    priors = PriorCache()

    def run(job: Job, events) -> JobResult:
        return run_job(job.splat, job.prompt, job.settings, static_prompt=job.static_prompt, seed=job.seed,
                       device=device, models=config.models, events=events, priors=priors)

    return run


def resolve_device_name(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but this machine has no usable CUDA device")
    return device


def describe_device(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return "cpu"


def _short(identity: bytes) -> str:
    return identity.hex()[:12]


class WorkerService:
    """Binds, serves until ``request_stop``, then cancels the running job and closes everything."""

    def __init__(self, config: ServiceConfig, runner: JobRunner | None = None) -> None:
        self.config = config
        self.keys: ServerKeys | None = require_keys_for(config.bind, config.keys_dir)
        self.device = resolve_device_name(config.device)
        self.device_description = describe_device(self.device)
        self.runner = runner or pipeline_runner(config, self.device)
        self.limits = p.Limits(max_gaussians=config.max_gaussians)
        self.jobs = JobQueue()
        self.endpoint: str | None = None
        self._stop = threading.Event()
        self._progress_sent: dict[str, tuple[int, float]] = {}  # job id -> (serial, time sent)
        self._last_heartbeat = time.monotonic()
        self._last_expiry = time.monotonic()
        self.context: zmq.Context | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def bind(self) -> str:
        """Creates the sockets and binds; returns the bound endpoint (a ``:*`` port resolved)."""
        self.context = zmq.Context()
        self.auth = start_authenticator(self.context, self.keys) if self.keys else None
        router = self.context.socket(zmq.ROUTER)
        router.linger = 500
        router.maxmsgsize = self.config.max_message_bytes
        router.sndhwm = 1000
        router.rcvhwm = 1000
        if self.keys:
            apply_server_curve(router, self.keys)
        try:
            router.bind(self.config.bind)
        except zmq.ZMQError as exc:
            router.close(0)
            self._close_context()
            raise OSError(f"cannot bind {self.config.bind}: {exc}") from None
        self.router = router
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.outbox = Outbox(self.context)
        self.job_thread = JobThread(self.jobs, self.runner, self.outbox.post)
        self.job_thread.start()
        log.info("listening", extra={"endpoint": self.endpoint, "device": self.device,
                                     "curve": bool(self.keys), "version": __version__,
                                     "max_gaussians": self.config.max_gaussians})
        return self.endpoint

    def request_stop(self) -> None:
        """Asks the loop to shut down (safe from signal handlers and other threads)."""
        self._stop.set()

    def serve(self) -> None:
        """Runs the loop until ``request_stop``; then shuts down cleanly."""
        if self.endpoint is None:
            self.bind()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.outbox.wake_socket, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                try:
                    ready = dict(poller.poll(int(TICK_S * 1000)))
                except KeyboardInterrupt:
                    break
                if self.outbox.wake_socket in ready:
                    self._handle_posted()
                if self.router in ready:
                    self._receive_messages()
                self._periodic(time.monotonic())
        except KeyboardInterrupt:
            pass
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        log.info("shutting down")
        for job in self.jobs.close():
            self._send(job.owner, p.Error(code="shutting_down", message="the worker is shutting down", job_id=job.id))
        self.job_thread.stop()
        self.job_thread.join(timeout=10.0)
        self._handle_posted()
        self.outbox.close()
        self.router.close(linger=500)
        self._close_context()
        log.info("stopped")

    def _close_context(self) -> None:
        if getattr(self, "auth", None) is not None:
            self.auth.stop()
        if self.context is not None:
            self.context.term()

    # ---- incoming -------------------------------------------------------------------------
    def _receive_messages(self) -> None:
        for _ in range(MAX_MESSAGES_PER_TICK):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, body = frames[0], frames[1:]
            try:
                message = p.decode(body, self.limits)
            except p.ProtocolError as exc:
                log.warning("rejected", extra={"client": _short(identity), "code": exc.code, "detail": exc.message})
                self._send(identity, p.Error(code=exc.code, message=exc.message))
                continue
            try:
                self._dispatch(identity, message)
            except Exception as exc:  # noqa: BLE001 - a handler bug must not stop the service
                log.exception("handler failed", extra={"client": _short(identity), "kind": type(message).__name__})
                self._send(identity, p.Error(code="internal", message=f"internal error: {type(exc).__name__}"))

    def _dispatch(self, identity: bytes, message: Any) -> None:
        if isinstance(message, p.Heartbeat):
            self._send(identity, p.Heartbeat())
        elif isinstance(message, p.Hello):
            self._on_hello(identity, message)
        elif isinstance(message, p.Status):
            self._send(identity, self._status_reply())
        elif isinstance(message, p.Submit):
            self._on_submit(identity, message)
        elif isinstance(message, p.Cancel):
            self._on_cancel(identity, message)
        elif isinstance(message, p.Attach):
            self._on_attach(identity, message)
        else:
            self._send(identity, p.Error(code="bad_kind", message=f"{type(message).__name__} is not a request a worker takes"))

    def _on_hello(self, identity: bytes, hello: p.Hello) -> None:
        log.info("hello", extra={"client": _short(identity), "client_name": hello.client_name})
        self._send(identity, p.Welcome(
            worker_version=__version__, device=self.device_description, models=self.config.models.describe(),
            max_gaussians=self.config.max_gaussians, max_queued_per_client=self.config.max_queued_per_client,
        ))

    def _status_reply(self) -> p.StatusReply:
        running = self.jobs.running
        return p.StatusReply(
            worker_version=__version__, device=self.device_description, models=self.config.models.describe(),
            running=running.summary() if running is not None else None,
            queue=[job.summary() for job in self.jobs.queued()],
            kept_results=sum(1 for j in self.jobs.jobs.values() if j.finished),
        )

    def _on_submit(self, identity: bytes, submit: p.Submit) -> None:
        if self._stop.is_set():
            self._send(identity, p.Error(code="shutting_down", message="the worker is shutting down"))
            return
        if submit.splat.count > self.config.max_gaussians:
            self._send(identity, p.Error(code="too_large", message=(
                f"splat has {submit.splat.count} Gaussians; this worker takes at most {self.config.max_gaussians}")))
            return
        if submit.splat.count == 0:
            self._send(identity, p.Error(code="bad_splat", message="splat has no Gaussians"))
            return
        try:
            settings = self._settings_for(submit.settings)
        except SettingsError as exc:
            self._send(identity, p.Error(code="bad_settings", message=str(exc)))
            return
        if self.jobs.unfinished_for(identity) >= self.config.max_queued_per_client:
            self._send(identity, p.Error(code="queue_full", message=(
                f"this client already has {self.config.max_queued_per_client} unfinished job(s); "
                "wait for one or cancel it")))
            return
        job = Job(splat=submit.splat, prompt=submit.prompt, settings=settings, static_prompt=submit.static_prompt or None,
                  seed=int(submit.seed), owner=identity, submitter=identity)
        position = self.jobs.add(job)
        job_logger("animus3d.service", job.id).info("accepted", extra={
            "client": _short(identity), "position": position, "preset": settings.preset,
            "gaussians": submit.splat.count, "prompt": submit.prompt[:80]})
        self._send(identity, p.Accepted(job_id=job.id, queue_position=position))

    def _settings_for(self, requested: dict) -> JobSettings:
        data = dict(requested or {})
        if self.config.preview_every is not None and "preview_every" not in data:
            data["preview_every"] = self.config.preview_every
        return JobSettings.from_dict(data)

    def _find_job(self, identity: bytes, job_id: str) -> Job | None:
        job = self.jobs.jobs.get(job_id)
        if job is None:
            self._send(identity, p.Error(code="unknown_job", message=f"no job {job_id!r} on this worker (finished results are kept {self.config.result_ttl_s:.0f} s)", job_id=job_id))
        return job

    def _on_cancel(self, identity: bytes, cancel: p.Cancel) -> None:
        job = self._find_job(identity, cancel.job_id)
        if job is None:
            return
        job.owner = identity
        jlog = job_logger("animus3d.service", job.id)
        if self.jobs.remove_queued(job):
            jlog.info("cancelled before start", extra={"client": _short(identity)})
            self._send(identity, p.Cancelled(job_id=job.id))
        elif job.finished:
            self._send_outcome(job)
        else:
            jlog.info("cancel requested", extra={"client": _short(identity)})
            job.cancel_event.set()  # the job thread stops at its next check and posts JobFinished

    def _on_attach(self, identity: bytes, attach: p.Attach) -> None:
        job = self._find_job(identity, attach.job_id)
        if job is None:
            return
        job.owner = identity
        job_logger("animus3d.service", job.id).info("attached", extra={"client": _short(identity), "state": job.state})
        self._send(identity, p.Attached(job_id=job.id, state=job.state, queue_position=self.jobs.position(job)))
        if job.finished:
            self._send_outcome(job)
        elif job.latest_progress is not None:
            self._send_progress(job)

    # ---- outgoing -------------------------------------------------------------------------
    def _send(self, identity: bytes, message: Any) -> None:
        try:
            self.router.send_multipart([identity, *p.encode(message)], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("send dropped", extra={"client": _short(identity), "kind": type(message).__name__})
        except zmq.ZMQError as exc:
            log.warning("send failed", extra={"client": _short(identity), "detail": str(exc)})

    def _send_progress(self, job: Job) -> None:
        progress = job.latest_progress
        if progress is None:
            return
        self._progress_sent[job.id] = (job.progress_serial, time.monotonic())
        self._send(job.owner, p.Progress(job_id=job.id, stage=progress.stage, step=progress.step,
                                         total=progress.total, losses=dict(progress.losses),
                                         eta_s=progress.eta_s, message=progress.message))

    def _send_outcome(self, job: Job) -> None:
        if job.state == DONE and job.result is not None:
            r = job.result
            self._send(job.owner, p.Result(job_id=job.id, animation=r.animation, settings=r.settings, seed=r.seed,
                                           prompt=r.prompt, static_prompt=r.static_prompt, device=r.device,
                                           timings=r.timings, losses=r.losses, loss_history=r.loss_history,
                                           warnings=list(r.warnings)))
        elif job.state == FAILED and job.error is not None:
            code, message = job.error
            self._send(job.owner, p.Error(code=code, message=message, job_id=job.id))
        elif job.state == CANCELLED:
            self._send(job.owner, p.Cancelled(job_id=job.id))

    def _handle_posted(self) -> None:
        for item in self.outbox.drain():
            job = self.jobs.jobs.get(item.job_id)
            if job is None:
                continue
            if isinstance(item, StageChanged):
                self._send_progress(job)
            elif isinstance(item, PreviewReady):
                self._send(job.owner, p.Preview(job_id=job.id, stage=item.stage, animation=item.animation,
                                                step=item.step, indices=item.indices))
            elif isinstance(item, JobFinished):
                if job.state == DONE:
                    self._send_progress(job)
                self._progress_sent.pop(job.id, None)
                self._send_outcome(job)

    def _periodic(self, now: float) -> None:
        running = self.jobs.running
        if running is not None and running.latest_progress is not None and not running.finished:
            serial, sent_at = self._progress_sent.get(running.id, (-1, 0.0))
            due_new = serial != running.progress_serial and now - sent_at >= self.config.progress_min_interval_s
            if due_new or now - sent_at >= self.config.progress_max_interval_s:
                self._send_progress(running)
        if now - self._last_heartbeat >= self.config.heartbeat_interval_s:
            self._last_heartbeat = now
            owners = {job.owner for job in list(self.jobs.jobs.values()) if not job.finished}
            for owner in owners:
                self._send(owner, p.Heartbeat())
        if now - self._last_expiry >= 5.0:
            self._last_expiry = now
            for job_id in self.jobs.expire(self.config.result_ttl_s, now):
                self._progress_sent.pop(job_id, None)
                job_logger("animus3d.service", job_id).info("result expired")
