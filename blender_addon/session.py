"""The connection to a worker and the job in flight, driven by one timer callback.

All socket work happens in :func:`tick`, which ``bpy.app.timers`` calls every ``TICK_INTERVAL``
seconds (tests call it by hand: timers never fire in module mode). A tick polls the client with
a bounded number of messages and time, applies at most one new preview, and writes frames with a
:class:`~.bake.FrameWriter` until its time budget is used; so Blender never waits on the network
and no tick takes much longer than ``TICK_BUDGET_S``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import bake, local_worker
from .retime import Retimed, retime
from .animus3d_shared.deformation import Animation
from .animus3d_shared.endpoints import is_loopback_endpoint
from .splat_mesh import splat_from_object
from .orientation import IDENTITY, animation_to_object, splat_to_world, world_rotation

TICK_INTERVAL = 0.05
TICK_BUDGET_S = 0.010  # frame writing stops when the next unit would pass this
POLL_MAX_MESSAGES = 16
POLL_MAX_TIME_S = 0.003
STATUS_EVERY_S = 5.0  # queue/state refresh for the panel while connected
PROP_JOB = "animus3d_job_id"
PROP_JOB_START = "animus3d_job_frame_start"
PROP_JOB_ROTATION = "animus3d_job_rotation"  # the object's world rotation the splat was sent with
ACTIVE_PHASES = ("submitting", "running", "baking")


@dataclass
class JobState:
    """What the panel shows about the current job and what the tick still has to apply."""

    object_name: str
    scene_name: str
    job_id: str = ""
    frame_start: int = 1  # the scene frame the clip starts on (the current frame at Animate)
    rotation: tuple[float, float, float, float] = IDENTITY  # object's world rotation at Animate (w, x, y, z)
    phase: str = "submitting"  # submitting, running, baking, done, failed, cancelled
    stage: str = ""
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    message: str = ""
    error: str = ""
    previews_applied: int = 0
    pending_preview: object | None = None
    pending_result: object | None = None
    writer: bake.FrameWriter | None = None
    writer_is_result: bool = False
    result_animation: Animation | None = None  # the final animation, once RESULT arrived
    clip: tuple[int, float] | None = None  # the worker's clip: (frames, fps), before retiming
    warnings: tuple[str, ...] = ()  # what the worker said about the result (RESULT.warnings)
    read_as: str = ""  # how the worker read the prompt, when not as typed (RESULT.motion_prompt)
    undo_pending: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    @property
    def fraction(self) -> float:
        if self.phase in ("done",):
            return 1.0
        return (self.step / self.total) if self.total else 0.0


class Session:
    """One worker connection and at most one job; owned by the module-level ``SESSION``."""

    def __init__(self) -> None:
        self.client = None
        self.address = ""
        self.curve = None
        self.welcome = None
        self.status = None
        self.error = ""
        self.job: JobState | None = None
        self.tick_durations: deque[float] = deque(maxlen=4096)
        self.reports: deque[tuple[str, str]] = deque(maxlen=64)  # (level, text), newest last
        self._status_asked = 0.0

    # ---- connection ----------------------------------------------------------------------
    def connect(self, address: str, heartbeat_timeout_s: float | None = None, curve=None) -> None:
        """(Re)connect to ``address``; returns at once, WELCOME arrives through :func:`tick`.
        ``curve``: (server public, client public, client secret) CURVE keys, or None. A changed
        address or changed keys make a new connection."""
        from .animus3d_shared.client import WorkerClient

        if self.client is not None and self.address == address and self.curve == curve and not self.client.lost:
            return
        refusal = offline_refusal(address)
        if refusal:
            raise RuntimeError(refusal)
        self.disconnect()
        kwargs = {} if heartbeat_timeout_s is None else {"timeout_s": float(heartbeat_timeout_s)}
        if curve is not None:
            kwargs.update(curve_server_public=curve[0], curve_client_public=curve[1], curve_client_secret=curve[2])
        self.client = WorkerClient(address, client_name="animus3d-blender", **kwargs)
        self.client.connect()
        self.address = address
        self.curve = curve
        self.error = ""

    def disconnect(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None
        self.welcome = None
        self.status = None

    @property
    def connected(self) -> bool:
        return self.client is not None and bool(getattr(self.client, "connected", False))

    # ---- jobs ----------------------------------------------------------------------------
    def submit(self, obj, scene, prompt: str, static_prompt: str, settings: dict, seed: int) -> JobState:
        """Send the object's splat to the worker; the job id comes back in ACCEPTED."""
        if self.client is None:
            raise RuntimeError("not connected to a worker")
        if self.job is not None and self.job.active:
            raise RuntimeError("a job is already running; cancel it first")
        rotation = world_rotation(obj)
        splat = splat_to_world(splat_from_object(obj), rotation)  # the worker sees it as the viewport does
        self.job = JobState(object_name=obj.name, scene_name=scene.name, message="submitting",
                            frame_start=int(scene.frame_current), rotation=rotation)
        obj[PROP_JOB_START] = self.job.frame_start  # a reopened file re-attaches with these
        obj[PROP_JOB_ROTATION] = list(rotation)
        self.client.submit(splat, prompt, static_prompt=static_prompt, settings=settings, seed=seed)
        return self.job

    def attach(self, job_id: str, object_name: str, scene_name: str) -> JobState:
        """Follow a job submitted earlier (after reopening a .blend)."""
        if self.client is None:
            raise RuntimeError("not connected to a worker")
        obj = bpy.data.objects.get(object_name)
        scene = bpy.data.scenes.get(scene_name)
        start = int(obj.get(PROP_JOB_START, obj.get(bake.PROP_START, 0))) if obj is not None else 0
        start = start or (int(scene.frame_current) if scene is not None else 1)
        rotation = tuple(float(v) for v in obj.get(PROP_JOB_ROTATION, IDENTITY)) if obj is not None else IDENTITY
        self.job = JobState(object_name=object_name, scene_name=scene_name, job_id=job_id, phase="running",
                            message="re-attaching", frame_start=start,
                            rotation=rotation if len(rotation) == 4 else IDENTITY)
        self.client.attach(job_id)
        return self.job

    def cancel(self) -> None:
        job = self.job
        if job is None or not job.active:
            return
        if self.client is not None and job.job_id:
            self.client.cancel(job.job_id)
        job.message = "cancelling"

    def request_status(self) -> None:
        if self.client is not None:
            self.client.request_status()

    # ---- the tick ------------------------------------------------------------------------
    def tick(self) -> float:
        start = time.perf_counter()
        deadline = start + TICK_BUDGET_S
        changed = False
        if self.client is not None:
            for msg in self.client.poll(max_messages=POLL_MAX_MESSAGES, max_time_s=POLL_MAX_TIME_S):
                self._handle(msg)
                changed = True
            now = time.monotonic()
            if self.welcome is not None and now - self._status_asked > STATUS_EVERY_S:
                self._status_asked = now
                try:
                    self.client.request_status()
                except RuntimeError:
                    pass  # send queue full: the worker is gone, and poll reports it
        if self.job is not None:
            changed |= self._advance(deadline)
        ended = local_worker.reap()
        if ended:
            self.error = ended
            self.report("ERROR", f"Animus3D: {ended}")
            changed = True
        if changed:
            _redraw()
        self.tick_durations.append(time.perf_counter() - start)
        return TICK_INTERVAL

    def _handle(self, msg) -> None:
        kind = type(msg).__name__
        job = self.job
        job_id = getattr(msg, "job_id", None)
        mine = job is not None and (not job_id or not job.job_id or job_id == job.job_id)
        if kind == "Welcome":
            self.welcome = msg
            self.error = ""
        elif kind == "StatusReply":
            self.status = msg
        elif kind == "Accepted" and job is not None and not job.job_id:
            job.job_id = str(job_id)
            job.phase = "running"
            job.message = "queued"
            _store_job_id(job, job.job_id)
        elif kind == "Attached" and mine:
            job.phase = "running"
            job.message = "re-attached"
        elif kind == "Progress" and mine:
            job.phase = "running" if job.phase == "submitting" else job.phase
            job.stage = str(getattr(msg, "stage", ""))
            job.step = int(getattr(msg, "step", 0) or 0)
            job.total = int(getattr(msg, "total", 0) or 0)
            job.eta_s = getattr(msg, "eta_s", None)
            job.message = str(getattr(msg, "message", "") or "")
        elif kind == "Preview" and mine:
            job.pending_preview = msg  # the newest wins
        elif kind == "Result" and mine:
            job.warnings = tuple(str(w) for w in (getattr(msg, "warnings", None) or ()))
            motion_prompt = str(getattr(msg, "motion_prompt", "") or "")
            typed = str(getattr(msg, "prompt", "") or "")
            job.read_as = motion_prompt if motion_prompt and motion_prompt != typed else ""
            for text in job.warnings:
                self.report("WARNING", f"{job.object_name}: {text}")
            job.pending_result = msg
            job.pending_preview = None
            job.phase = "baking"
            job.message = "baking the animation"
        elif kind == "Cancelled" and mine:
            was_active = job.active
            job.phase = "cancelled"
            job.message = "cancelled"
            job.pending_preview = None
            job.writer = None
            _store_job_id(job, "")
            _discard_preview(job)
            if was_active:
                self.report("INFO", f"Animus3D: the job of {job.object_name!r} was cancelled")
        elif kind == "Error":
            text = _error_text(msg)
            if job is not None and job.active and mine:
                job.phase = "failed"
                job.error = text
                job.message = text
                job.pending_preview = job.pending_result = None
                job.writer = None
                _store_job_id(job, "")
                _discard_preview(job)
            if getattr(msg, "code", "") in ("unreachable", "lost", "timeout") or job is None or not mine:
                self.error = text
            self.report("ERROR", f"Animus3D: {text}")

    def _advance(self, deadline: float) -> bool:
        job = self.job
        obj = bpy.data.objects.get(job.object_name)
        if obj is None:
            if job.active:  # deleted mid-job: the worker must stop computing for it
                if self.client is not None and job.job_id:
                    try:
                        self.client.cancel(job.job_id)
                    except RuntimeError:
                        pass  # send queue full: the worker is gone, and poll reports it
                job.phase, job.error = "cancelled", f"object {job.object_name!r} was deleted; its job is cancelled"
                job.message = job.error
                job.pending_preview = job.pending_result = None
                job.writer = None
                _store_job_id(job, "")
                self.report("WARNING", f"Animus3D: {job.error}")
            return False
        try:
            return self._write(job, obj, deadline)
        except ReferenceError:  # undo or reload replaced the datablocks: start the frames again
            job.writer = None
            return False

    def _write(self, job: JobState, obj, deadline: float) -> bool:
        changed = False
        if job.writer is None and job.writer_is_result and job.phase == "baking":
            job.pending_result = job.result_animation  # the writer was dropped (undo): bake again
        scene = bpy.data.scenes.get(job.scene_name)
        if job.pending_result is not None:
            anim, indices = _animation_of(job.pending_result, rotation=job.rotation)
            job.clip = (anim.num_frames, float(anim.fps))
            if scene is not None:
                anim = retime(anim, scene_fps(scene))
            job.pending_result = None
            job.result_animation = anim
            job.writer = _writer_for(obj, anim.num_frames, job.writer, job.frame_start, preview=False)
            job.writer.load(anim, indices)
            job.writer_is_result = True
            changed = True
        elif job.pending_preview is not None and (job.writer is None or job.writer.done) and not job.writer_is_result:
            anim, indices = _animation_of(job.pending_preview, scene, job.rotation)
            job.pending_preview = None
            if indices is None and anim.num_gaussians != len(obj.data.vertices):
                job.message = f"preview of {anim.num_gaussians} Gaussians (subsampled, no indices) not shown"
                return True
            job.writer = _writer_for(obj, anim.num_frames, job.writer, job.frame_start, preview=True)
            job.writer.load(anim, indices)
            job.previews_applied += 1
            changed = True
        writer = job.writer
        if writer is not None and not writer.done:
            writer.obj = obj
            writer.step(deadline)
            if writer.done:
                changed = True
                obj.data.update_tag()
                if job.writer_is_result:
                    writer.finish()
                    if scene is not None and getattr(getattr(scene, "animus3d", None), "fit_scene_range", False):
                        bake.fit_scene_range(obj, scene, writer.frame_start, writer.frames)
                    job.phase, job.message = "done", "animation baked"
                    _store_job_id(job, "")
                    self.report("INFO", f"Animus3D: {job.object_name!r} animated ({job.result_animation.num_frames} frames)"
                                if job.result_animation is not None else "Animus3D: animation baked")
                    job.undo_pending = True  # pushed on the next tick: it snapshots the file
        elif job.undo_pending:
            job.undo_pending = False
            _undo_push("Animus3D: bake animation")
        return changed

    def report(self, level: str, text: str) -> None:
        """Keep ``text`` for the panel and send it to Blender's report area and info log."""
        self.reports.append((level, text))
        try:
            bpy.ops.animus3d.report(level=level, message=text)
        except (RuntimeError, AttributeError):
            print(f"Animus3D {level}: {text}")  # no operator context: the console still shows it

    # ---- teardown ------------------------------------------------------------------------
    def close(self) -> None:
        self.disconnect()
        self.job = None


def offline_refusal(address: str) -> str:
    """Why Blender's "Allow Online Access" forbids reaching ``address`` ('' where it does not): a
    worker on this machine needs no online access, any other address does."""
    if getattr(bpy.app, "online_access", True) or is_loopback_endpoint(address):
        return ""
    return (f"Online access is off in Blender (Preferences > System > Network): allow it to reach the worker "
            f"at {address}, or start a local worker")


def _writer_for(obj, frames: int, current: bake.FrameWriter | None, frame_start: int, preview: bool) -> bake.FrameWriter:
    if (current is not None and current.frames == frames and current.frame_start == frame_start
            and current.preview == preview):
        try:
            if current.obj == obj:
                return current
        except ReferenceError:
            pass
    writer = bake.FrameWriter(obj, frames, frame_start=frame_start, preview=preview)
    writer.prepare()
    return writer


def _animation_of(msg, scene=None, rotation=IDENTITY) -> tuple[Animation, np.ndarray | None]:
    """The message's animation in the mesh's own frame (it was computed on the splat turned by the
    object's world ``rotation``), retimed to ``scene``'s frame rate, and its Gaussian indices."""
    if isinstance(msg, (Animation, Retimed)):
        anim, indices = msg, None
    else:
        anim = getattr(msg, "animation", None)
        if anim is None:
            anim = Animation(msg.delta_position, msg.delta_rotation, msg.delta_scale, float(getattr(msg, "fps", 8.0)))
        anim = animation_to_object(anim, rotation)
        indices = getattr(msg, "indices", None)
    if scene is not None:
        anim = retime(anim, scene_fps(scene))
    return anim, (None if indices is None else np.asarray(indices))


def scene_fps(scene) -> float:
    return float(scene.render.fps) / float(scene.render.fps_base or 1.0)


def _error_text(msg) -> str:
    code = getattr(msg, "code", "") or "error"
    text = getattr(msg, "message", "") or str(msg)
    return f"{text} ({code})" if code not in text else text


def _discard_preview(job: JobState) -> None:
    """A job that ends without a result leaves no preview behind (a finished bake stays)."""
    obj = bpy.data.objects.get(job.object_name)
    if obj is not None and obj.type == "MESH":
        try:
            bake.discard_preview(obj)
        except ReferenceError:
            pass


def _store_job_id(job: JobState, job_id: str) -> None:
    """Keep the running job's id in the scene and on the object, so a reopened file re-attaches."""
    scene = bpy.data.scenes.get(job.scene_name)
    if scene is not None and hasattr(scene, "animus3d"):
        scene.animus3d.job_id = job_id
        scene.animus3d.job_object = job.object_name if job_id else ""
    obj = bpy.data.objects.get(job.object_name)
    if obj is not None:
        if job_id:
            obj[PROP_JOB] = job_id
        else:
            for prop in (PROP_JOB, PROP_JOB_START, PROP_JOB_ROTATION):
                if prop in obj:
                    del obj[prop]


def _undo_push(message: str) -> None:
    try:
        bpy.ops.ed.undo_push(message=message)
    except (RuntimeError, AttributeError):
        pass  # no undo stack in background mode


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


SESSION = Session()


def tick() -> float:
    """The timer callback: one bounded round of socket and bake work. Returns the next interval."""
    try:
        return SESSION.tick()
    except Exception as exc:  # a timer that raises is dropped by Blender: report and keep going
        SESSION.error = f"internal error in the Animus3D tick: {exc}"
        return TICK_INTERVAL


def tick_stats() -> dict[str, float]:
    """Max and p95 of the recorded tick durations, in seconds."""
    d = np.asarray(SESSION.tick_durations, dtype=np.float64)
    if d.size == 0:
        return {"count": 0, "max": 0.0, "p95": 0.0}
    return {"count": int(d.size), "max": float(d.max()), "p95": float(np.percentile(d, 95))}
