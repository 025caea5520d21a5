"""The worker's socket loop: a ROUTER serving many clients, never waiting on a job.

Threads and processes:
- the loop thread (the caller of ``serve``) owns every socket, the job list and the job store,
  and answers HELLO, STATUS, HEARTBEAT, ATTACH, CANCEL and SUBMIT at once;
- jobs run in a job runner placement (``process_runner.ProcessRunner``: a child process), which the
  loop drives with start/cancel/kill/poll and which wakes the loop through the ``Outbox``;
- with CURVE keys, the ZAP authenticator thread from ``zmq.auth``.

A job belongs to the identity that submitted it: the client's CURVE public key when keys are on,
else the client's token (SUBMIT/CANCEL/ATTACH/STATUS ``token``), else the sending socket. Only that
identity (or an admin identity) sees it in STATUS, attaches to it or cancels it; its messages go to
the owner's socket that last submitted, attached to or cancelled it, and to the socket of every admin
that attached to or cancelled it (an admin never takes the owner's messages away).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import zmq

from animus3d_shared import protocol as p
from animus3d_shared.settings import JobSettings, SettingsError

from .. import __version__
from .config import ServiceConfig
from .jobs import CANCELLED, FAILED, RUNNING, Job, JobQueue, is_final, new_job_id, state_of
from .logs import job_logger
from .outbox import Outbox
from .runner import JobRunner, JobWork, job_cost, job_time_limit
from .security import ServerKeys, apply_server_curve, require_keys_for, start_authenticator
from .store import JobStore

log = logging.getLogger("animus3d.service")

MAX_MESSAGES_PER_TICK = 64
TICK_S = 0.05
EXPIRY_EVERY_S = 5.0
# Bytes per Gaussian per frame of a RESULT's animation (delta_position, delta_rotation, delta_scale).
_RESULT_BYTES_PER_GAUSSIAN_FRAME = (3 + 4 + 3) * 4

RunnerFactory = Callable[[Callable[[], None]], JobRunner]


def describe_device(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return "cpu"


def token_identity(token: str) -> str:
    """The identity a client token stands for (the token itself is never stored or logged)."""
    return "token:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def key_identity(z85_public_key: str) -> str:
    return "key:" + z85_public_key


def _short(identity: bytes) -> str:
    return identity.hex()[:12]


def _brief(identity: str) -> str:
    return identity[:24]


class WorkerService:
    """Binds, serves until ``request_stop``, then drains: queued jobs and the running one end
    ``shutting_down``."""

    def __init__(self, config: ServiceConfig, runner_factory: RunnerFactory | None = None) -> None:
        self.config = config
        self.keys: ServerKeys | None = require_keys_for(config.bind, config.keys_dir)
        from ..devices import device_name  # torch loads here, not when the service module is imported

        self.device = device_name(config.device)
        self.device_description = describe_device(self.device)
        self.runner_factory = runner_factory
        self.limits = p.Limits(max_gaussians=config.max_gaussians)
        self.instance_id = uuid.uuid4().hex
        self.jobs = JobQueue()
        self.endpoint: str | None = None
        self._stop = threading.Event()
        self._progress_sent: dict[str, tuple[int, float]] = {}  # job id -> (serial, time sent)
        self._last_heartbeat = time.monotonic()
        self._last_expiry = time.monotonic()
        self.context: zmq.Context | None = None
        self._temp_state: tempfile.TemporaryDirectory | None = None
        state_dir = config.state_dir
        if state_dir is None:
            self._temp_state = tempfile.TemporaryDirectory(prefix="animus3d-jobs-")
            state_dir = Path(self._temp_state.name)
        self.store = JobStore(Path(state_dir) / "jobs.sqlite", self.limits)

    # ---- lifecycle ------------------------------------------------------------------------
    def bind(self) -> str:
        """Creates the sockets, recovers stored jobs and binds; returns the bound endpoint."""
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
        self.runner = self._make_runner()
        self._recover()
        log.info("listening", extra={"endpoint": self.endpoint, "device": self.device,
                                     "curve": bool(self.keys), "version": __version__,
                                     "max_gaussians": self.config.max_gaussians, "instance": self.instance_id,
                                     "store": self.store.path})
        return self.endpoint

    def _make_runner(self) -> JobRunner:
        if self.runner_factory is not None:
            return self.runner_factory(self.outbox.wake)
        from .process_runner import ChildSpec, ProcessRunner

        spec = ChildSpec(device=self.device, models=self.config.models, max_gaussians=self.config.max_gaussians)
        return ProcessRunner(spec, self.outbox.wake, cancel_grace_s=self.config.cancel_grace_s)

    def _recover(self) -> None:
        queued, finished = self.store.recover()
        sizes = self.store.outcome_sizes()
        for stored in finished:
            job = Job(id=stored.id, identity=stored.identity, route=None, submit=None, settings=None,
                      gaussians=0, prompt="", state=stored.state, submitted_at=stored.submitted,
                      finished_at=stored.finished, outcome_bytes=sizes.get(stored.id, 0))
            self.jobs.add_finished(job)
        for stored in queued:
            submit = stored.submit
            self.jobs.add(Job(id=stored.id, identity=stored.identity, route=None, submit=submit,
                              settings=JobSettings.from_dict(submit.settings), gaussians=submit.splat.count,
                              prompt=submit.prompt, submitted_at=stored.submitted))
        if queued or finished:
            log.info("recovered", extra={"queued": len(queued), "finished": len(finished)})

    def request_stop(self) -> None:
        """Asks the loop to shut down (safe from signal handlers and other threads)."""
        self._stop.set()
        outbox = getattr(self, "outbox", None)
        if outbox is not None:
            outbox.wake()

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
                    self.outbox.drain()
                if self.router in ready:
                    self._receive_messages()
                now = time.monotonic()
                self._pump_runner(now)
                self._schedule()
                self._periodic(now)
        except KeyboardInterrupt:
            pass
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        log.info("shutting down")
        for job in self.jobs.drain_queued():
            self._finish(job, p.Error(code="shutting_down", message="the worker is shutting down", job_id=job.id))
        for event in self.runner.close(grace_s=self.config.cancel_grace_s):
            self._on_runner_event(event.job_id, event.message)
        self.outbox.close()
        self.router.close(linger=500)
        self._close_context()
        self.store.close()
        if self._temp_state is not None:
            self._temp_state.cleanup()
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
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            route, body = frames[0].bytes, frames[1:]
            try:
                message = p.decode(body, self.limits)
            except p.ProtocolError as exc:
                log.warning("rejected", extra={"client": _short(route), "code": exc.code, "detail": exc.message})
                self._send(route, p.Error(code=exc.code, message=exc.message))
                continue
            try:
                self._dispatch(route, self._identity(route, body, message), message)
            except Exception as exc:  # noqa: BLE001 - a handler bug must not stop the service
                log.exception("handler failed", extra={"client": _short(route), "kind": type(message).__name__})
                self._send(route, p.Error(code="internal", message=f"internal error: {type(exc).__name__}"))

    def _identity(self, route: bytes, body: list, message: Any) -> str:
        """Who sent ``message``: the CURVE key, else the client's token, else the socket."""
        if self.keys is not None:
            try:
                user = body[0].get("User-Id")
            except (zmq.ZMQError, AttributeError, IndexError):
                user = None
            if user:
                return key_identity(user)
        token = getattr(message, "token", "")
        if token:
            return token_identity(token)
        return "socket:" + route.hex()

    def _dispatch(self, route: bytes, identity: str, message: Any) -> None:
        if isinstance(message, p.Heartbeat):
            self._send(route, p.Heartbeat(instance_id=self.instance_id))
        elif isinstance(message, p.Hello):
            self._on_hello(route, message)
        elif isinstance(message, p.Status):
            self._send(route, self._status_reply(identity))
        elif isinstance(message, p.Submit):
            self._on_submit(route, identity, message)
        elif isinstance(message, p.Cancel):
            self._on_cancel(route, identity, message)
        elif isinstance(message, p.Attach):
            self._on_attach(route, identity, message)
        else:
            self._send(route, p.Error(code="bad_kind", message=f"{type(message).__name__} is not a request a worker takes"))

    def _on_hello(self, route: bytes, hello: p.Hello) -> None:
        log.info("hello", extra={"client": _short(route), "client_name": hello.client_name[:80]})
        self._send(route, p.Welcome(
            worker_version=__version__, device=self.device_description, models=self.config.models.describe(),
            max_gaussians=self.config.max_gaussians, max_queued_per_client=self.config.max_queued_per_client,
            instance_id=self.instance_id,
        ))

    def _visible(self, identity: str, job: Job) -> bool:
        return job.identity == identity or identity in self.config.admin_identities

    def _status_reply(self, identity: str) -> p.StatusReply:
        mine = [j for j in self.jobs.jobs.values() if self._visible(identity, j)]
        running = [j for j in mine if j.state == RUNNING]
        return p.StatusReply(
            worker_version=__version__, device=self.device_description, models=self.config.models.describe(),
            running=running[0].summary() if running else None,
            queue=[job.summary() for job in self.jobs.queued() if self._visible(identity, job)],
            kept_results=sum(1 for j in mine if j.finished),
            running_jobs=[job.summary() for job in running],
        )

    # ---- admission --------------------------------------------------------------------------
    def _admission_error(self, identity: str, submit: p.Submit, settings: JobSettings) -> p.Error | None:
        cfg = self.config
        if submit.splat.count > cfg.max_gaussians:
            return p.Error(code="too_large", message=(
                f"splat has {submit.splat.count} Gaussians; this worker takes at most {cfg.max_gaussians}"))
        out_frames = settings.frames * (settings.refine_frame_multiplier if settings.refine_steps > 0 else 1)
        if out_frames > self.limits.max_frames:
            return p.Error(code="too_large", message=(
                f"the result would have {out_frames} frames (frames x refine_frame_multiplier); the wire "
                f"limit is {self.limits.max_frames}"))
        result_bytes = out_frames * submit.splat.count * _RESULT_BYTES_PER_GAUSSIAN_FRAME
        largest_array = out_frames * submit.splat.count * 16
        if largest_array > self.limits.max_array_bytes or result_bytes > cfg.max_result_bytes:
            return p.Error(code="too_large", message=(
                f"the result would be {result_bytes / 2**20:.0f} MiB ({out_frames} frames x "
                f"{submit.splat.count} Gaussians); use fewer frames or Gaussians"))
        cost = job_cost(settings.to_dict())
        if cost > cfg.max_job_cost:
            return p.Error(code="too_costly", message=(
                f"the job's estimated cost {cost:.0f} is over this worker's cap of {cfg.max_job_cost:.0f}; "
                "use a smaller preset, fewer steps or a lower resolution"))
        if self.jobs.unfinished_for(identity) >= cfg.max_queued_per_client:
            return p.Error(code="queue_full", message=(
                f"this client already has {cfg.max_queued_per_client} unfinished job(s); wait for one or cancel it"))
        if self.jobs.unfinished() >= cfg.max_queued_total:
            return p.Error(code="queue_full", message=(
                f"the worker already has {cfg.max_queued_total} unfinished jobs; try again later"))
        return None

    def _on_submit(self, route: bytes, identity: str, submit: p.Submit) -> None:
        if self._stop.is_set():
            self._send(route, p.Error(code="shutting_down", message="the worker is shutting down"))
            return
        try:
            settings = self._settings_for(submit.settings)
        except SettingsError as exc:
            self._send(route, p.Error(code="bad_settings", message=str(exc)))
            return
        refused = self._admission_error(identity, submit, settings)
        if refused is not None:
            log.info("refused", extra={"client": _short(route), "identity": _brief(identity), "code": refused.code})
            self._send(route, refused)
            return
        job_id = new_job_id()
        resolved = p.Submit(splat=submit.splat, prompt=submit.prompt, static_prompt=submit.static_prompt,
                            settings=settings.to_dict(), seed=submit.seed, tag=submit.tag)
        job = Job(id=job_id, identity=identity, route=route, submit=resolved, settings=settings,
                  gaussians=submit.splat.count, prompt=submit.prompt)
        self.store.add(job_id, identity, resolved, job.submitted_at)
        position = self.jobs.add(job)
        job_logger("animus3d.service", job.id).info("accepted", extra={
            "client": _short(route), "identity": _brief(identity), "position": position, "preset": settings.preset,
            "gaussians": submit.splat.count, "prompt": submit.prompt[:80]})
        self._send(route, p.Accepted(job_id=job.id, queue_position=position))
        self._schedule()

    def _settings_for(self, requested: dict) -> JobSettings:
        data = dict(requested or {})
        if self.config.preview_every is not None and "preview_every" not in data:
            data["preview_every"] = self.config.preview_every
        return JobSettings.from_dict(data)

    # ---- cancel / attach ----------------------------------------------------------------------
    def _find_job(self, route: bytes, identity: str, job_id: str) -> Job | None:
        """The job if ``identity`` may act on it; else ERROR unknown_job (another's job looks absent)."""
        job = self.jobs.jobs.get(job_id)
        if job is None or not self._visible(identity, job):
            if job is not None:
                job_logger("animus3d.service", job.id).warning("refused foreign job", extra={
                    "client": _short(route), "identity": _brief(identity)})
            self._send(route, p.Error(code="unknown_job", message=(
                f"no job {job_id[:64]!r} of yours on this worker (finished results are kept "
                f"{self.config.result_ttl_s:.0f} s)"), job_id=job_id))
            return None
        return job

    def _follow(self, job: Job, route: bytes, identity: str) -> None:
        """The job's messages go to ``route`` from now on: it becomes the job's route if ``identity``
        owns the job, else (an admin) it watches the job beside the owner's route."""
        if identity == job.identity:
            job.route = route
            job.watchers.discard(route)
        elif route != job.route and not job.finished:
            job.watchers.add(route)

    def _on_cancel(self, route: bytes, identity: str, cancel: p.Cancel) -> None:
        job = self._find_job(route, identity, cancel.job_id)
        if job is None:
            return
        self._follow(job, route, identity)
        jlog = job_logger("animus3d.service", job.id)
        if job.finished:
            self._send_outcome(job, route)
        elif self.jobs.remove_queued(job):
            jlog.info("cancelled before start", extra={"client": _short(route), "identity": _brief(identity)})
            self._finish(job, p.Cancelled(job_id=job.id))
        else:
            jlog.info("cancel requested", extra={"client": _short(route), "identity": _brief(identity)})
            self.runner.cancel(job.id)  # the runner kills it if it does not stop within the grace period

    def _on_attach(self, route: bytes, identity: str, attach: p.Attach) -> None:
        job = self._find_job(route, identity, attach.job_id)
        if job is None:
            return
        self._follow(job, route, identity)
        job_logger("animus3d.service", job.id).info("attached", extra={"client": _short(route), "state": job.state})
        self._send(route, p.Attached(job_id=job.id, state=job.state, queue_position=self.jobs.position(job)))
        if job.finished:
            self._send_outcome(job, route)
        elif job.latest_progress is not None:
            self._send(route, job.latest_progress)

    # ---- running jobs ---------------------------------------------------------------------------
    def _schedule(self) -> None:
        while not self._stop.is_set() and len(self.runner.running) < self.runner.capacity:
            job = self.jobs.next_queued()
            if job is None:
                return
            self.store.set_running(job.id)
            limit = job_time_limit(job.submit.settings, self.config.max_job_seconds,
                                   self.config.job_seconds_per_cost, self.config.job_startup_s)
            job_logger("animus3d.service.job", job.id).info("started", extra={
                "preset": job.settings.preset, "gaussians": job.gaussians, "time_limit_s": round(limit, 1)})
            self.runner.start(JobWork(job.id, job.submit, limit))

    def _pump_runner(self, now: float) -> None:
        for event in self.runner.poll(now):
            self._on_runner_event(event.job_id, event.message)

    def _on_runner_event(self, job_id: str, message: Any) -> None:
        job = self.jobs.jobs.get(job_id)
        if job is None or job.finished:
            return
        if isinstance(message, p.Progress):
            job.latest_progress = message
            job.progress_serial += 1
            if message.stage != job.last_stage:
                job.last_stage = message.stage
                self._send_progress(job)
        elif isinstance(message, p.Preview):
            self._send_to_job(job, message)
        elif is_final(message):
            if isinstance(message, p.Result):
                self._send_progress(job)
            self._finish(job, message)

    def _finish(self, job: Job, outcome: Any) -> None:
        """Ends ``job`` with ``outcome`` (RESULT, ERROR or CANCELLED): stored, then sent to its route."""
        job.state = state_of(outcome)
        job.finished_at = time.time()
        job.outcome_bytes = self.store.finish(job.id, job.state, outcome, job.finished_at)
        job.submit = None  # the splat is no longer needed in memory
        self._progress_sent.pop(job.id, None)
        jlog = job_logger("animus3d.service.job", job.id)
        if isinstance(outcome, p.Error):
            jlog.warning("failed", extra={"code": outcome.code, "detail": outcome.message[:300]})
        else:
            jlog.info("done" if job.state not in (CANCELLED, FAILED) else job.state)
        self._send_to_job(job, outcome)
        job.watchers.clear()

    # ---- outgoing -------------------------------------------------------------------------
    def _send(self, route: bytes, message: Any) -> None:
        try:
            self.router.send_multipart([route, *p.encode(message)], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("send dropped", extra={"client": _short(route), "kind": type(message).__name__})
        except zmq.ZMQError as exc:
            log.warning("send failed", extra={"client": _short(route), "detail": str(exc)})

    def _send_to_job(self, job: Job, message: Any) -> bool:
        """Sends ``message`` to every socket following the job (``Job.routes``); False when none does."""
        routes = job.routes()
        for route in routes:
            self._send(route, message)
        return bool(routes)

    def _send_progress(self, job: Job) -> None:
        if job.latest_progress is not None and self._send_to_job(job, job.latest_progress):
            self._progress_sent[job.id] = (job.progress_serial, time.monotonic())

    def _send_outcome(self, job: Job, route: bytes) -> None:
        """Replays a finished job's stored outcome to ``route``."""
        try:
            outcome = self.store.outcome(job.id)
        except p.ProtocolError as exc:
            outcome = p.Error(code="internal", message=f"stored outcome unreadable: {exc.message}", job_id=job.id)
        if outcome is None:
            outcome = p.Error(code="internal", message="the job's outcome is missing from the store", job_id=job.id)
        self._send(route, outcome)

    def _periodic(self, now: float) -> None:
        for job in self.jobs.running():
            if job.latest_progress is None:
                continue
            serial, sent_at = self._progress_sent.get(job.id, (-1, 0.0))
            due_new = serial != job.progress_serial and now - sent_at >= self.config.progress_min_interval_s
            if due_new or now - sent_at >= self.config.progress_max_interval_s:
                self._send_progress(job)
        if now - self._last_heartbeat >= self.config.heartbeat_interval_s:
            self._last_heartbeat = now
            routes = {route for job in self.jobs.jobs.values() if not job.finished for route in job.routes()}
            for route in routes:
                self._send(route, p.Heartbeat(instance_id=self.instance_id))
        if now - self._last_expiry >= EXPIRY_EVERY_S:
            self._last_expiry = now
            gone = self.jobs.expire(self.config.result_ttl_s, self.config.max_result_bytes)
            if gone:
                self.store.delete(gone)
            for job_id in gone:
                self._progress_sent.pop(job_id, None)
                job_logger("animus3d.service", job_id).info("result expired")
