"""Baking an animation into a splat object, in small time-bounded units.

Layout on the object (documented in docs/blender.md):

- shape keys: ``Basis`` (the original positions) and ``animus3d_f0000`` … one per frame holding
  absolute positions ``x + dx_t``; each is keyed 0 on scene frame F−1, 1 on F, 0 on F+1 with
  CONSTANT interpolation, where F = ``frame_start + t``; so exactly frame t's key is 1 on frame F;
- per-frame point attributes ``animus3d_f0000_rot`` (QUATERNION, ``normalise(dq_t ⊗ q)``) and
  ``animus3d_f0000_scale`` (FLOAT_VECTOR, ``s + ds_t``, log-space);
- ``animus3d_base_rot`` / ``animus3d_base_scale``: the original rotations and log-scales;
- a ``frame_change_post`` handler copies the current frame's rotation/scale into the standard
  ``rot_0..3`` / ``scale_0..2`` attributes, so KIRI-style renderers and our viewport display see the
  deformed Gaussians; outside the animated range they show the original values;
- custom properties ``animus3d_frames`` and ``animus3d_frame_start`` on the object.

The same :class:`FrameWriter` serves live previews (driven from the timer tick with a deadline) and
the final bake (run to completion), so a preview and a result leave identical structures.
"""

from __future__ import annotations

import re
import time

import numpy as np

from .animus3d_shared.deformation import Animation
from .retime import frame_of
from .splat_mesh import (
    BASE_ROT,
    BASE_SCALE,
    get_float_attribute,
    get_positions,
    get_vector_attribute,
    key_points,
    set_float_attribute,
    set_vector_attribute,
)

KEY_PREFIX = "animus3d_f"
PROP_FRAMES = "animus3d_frames"
PROP_START = "animus3d_frame_start"
PROP_OWN_BASIS = "animus3d_own_basis"
ROT_CHUNK = 40_000  # Gaussians per rotation unit (about 3 ms of numpy on a laptop core)
_FRAME_ATTR = re.compile(r"^animus3d_f\d{4}_(rot|scale)$")


def key_name(t: int) -> str:
    return f"{KEY_PREFIX}{t:04d}"


def rot_attr(t: int) -> str:
    return f"{KEY_PREFIX}{t:04d}_rot"


def scale_attr(t: int) -> str:
    return f"{KEY_PREFIX}{t:04d}_scale"


def quat_compose(dq: np.ndarray, q: np.ndarray) -> np.ndarray:
    """normalise(dq ⊗ q) for [n, 4] float32 wxyz arrays, without temporaries of shape [n, 4, 4]."""
    aw, ax, ay, az = dq[:, 0], dq[:, 1], dq[:, 2], dq[:, 3]
    bw, bx, by, bz = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    out = np.empty((dq.shape[0], 4), np.float32)
    out[:, 0] = aw * bw - ax * bx - ay * by - az * bz
    out[:, 1] = aw * bx + ax * bw + ay * bz - az * by
    out[:, 2] = aw * by - ax * bz + ay * bw + az * bx
    out[:, 3] = aw * bz + ax * by - ay * bx + az * bw
    out /= np.maximum(np.sqrt(np.einsum("ij,ij->i", out, out)), 1e-12)[:, None]
    return out


# ---- F-curves across Blender 4.2 … 5.x -------------------------------------------------------
def fcurves_of(id_data):
    """The F-curve collection animating ``id_data``: the slotted-action channelbag on 4.4+/5.x,
    ``Action.fcurves`` on older versions. None when it has no action."""
    anim = id_data.animation_data
    if anim is None or anim.action is None:
        return None
    action = anim.action
    slot = getattr(anim, "action_slot", None)
    if slot is not None and hasattr(action, "layers"):
        for layer in action.layers:
            for strip in layer.strips:
                bag = strip.channelbag(slot)
                if bag is not None:
                    return bag.fcurves
        if not hasattr(action, "fcurves"):
            return None
    return action.fcurves


def _key_fcurve(key, name: str):
    fcurves = fcurves_of(key)
    if fcurves is None:
        return None
    return fcurves.find(f'key_blocks["{name}"].value')


# ---- base state ------------------------------------------------------------------------------
class BaseState:
    """The object's rest state: positions, rotations, log-scales (read once per job)."""

    def __init__(self, obj):
        mesh = obj.data
        ensure_base_attributes(mesh)
        self.means = get_positions(mesh)
        self.quats = get_vector_attribute(mesh, BASE_ROT, 4)
        self.log_scales = get_vector_attribute(mesh, BASE_SCALE, 3)
        self.count = self.means.shape[0]


def ensure_base_attributes(mesh) -> None:
    """Copy the standard rot/scale attributes into the base attributes the first time."""
    if BASE_ROT not in mesh.attributes:
        quats = np.stack([get_float_attribute(mesh, f"rot_{c}") for c in range(4)], axis=1)
        set_vector_attribute(mesh, BASE_ROT, "QUATERNION", quats)
    if BASE_SCALE not in mesh.attributes:
        scales = np.stack([get_float_attribute(mesh, f"scale_{c}") for c in range(3)], axis=1)
        set_vector_attribute(mesh, BASE_SCALE, "FLOAT_VECTOR", scales)


def baked_frames(obj) -> int:
    return int(obj.get(PROP_FRAMES, 0)) if obj is not None else 0


# ---- writer ----------------------------------------------------------------------------------
class FrameWriter:
    """Writes frames of an animation into ``obj`` unit by unit (see the module docstring).

    ``load(animation, indices)`` queues every frame; ``step(deadline)`` writes units until the
    ``time.perf_counter()`` deadline would be passed and returns True once everything is written.
    ``indices`` (for subsampled previews) names the Gaussians the animation covers; the others
    keep what they had.
    """

    def __init__(self, obj, frames: int, frame_start: int = 1, base: BaseState | None = None):
        self.obj = obj
        self.frames = int(frames)
        self.frame_start = int(frame_start)
        self.base = base if base is not None else BaseState(obj)
        self._animation: Animation | None = None
        self._indices: np.ndarray | None = None
        self._pending: list[int] = []
        self._units = None
        self._unit_cost = 0.006
        self.frames_written = 0

    # -- structure
    def prepare(self) -> None:
        """Remove a previous bake if its frame count differs, record the layout, set the range."""
        obj = self.obj
        if int(obj.get(PROP_START, self.frame_start)) != self.frame_start:
            remove_frames(obj, 0)  # keyframes sit on other scene frames: start again
        elif baked_frames(obj) > self.frames:
            remove_frames(obj, self.frames)  # keep the frames both have; they get overwritten
        obj[PROP_FRAMES] = self.frames
        obj[PROP_START] = self.frame_start

    def set_scene_range(self, scene) -> None:
        scene.frame_start = self.frame_start
        scene.frame_end = self.frame_start + self.frames - 1

    # -- loading
    def load(self, animation, indices: np.ndarray | None = None) -> None:
        """Queue every frame of ``animation`` (an Animation or a :class:`~.retime.Retimed`)."""
        if animation.num_frames != self.frames:
            raise ValueError(f"animation has {animation.num_frames} frames; this bake has {self.frames}")
        expected = self.base.count if indices is None else len(indices)
        if animation.num_gaussians != expected:
            raise ValueError(f"animation covers {animation.num_gaussians} Gaussians; expected {expected}")
        self._animation = animation
        self._indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._pending = list(range(self.frames))
        self._units = None

    @property
    def done(self) -> bool:
        return not self._pending and self._units is None

    def step(self, deadline: float = float("inf")) -> bool:
        """Write units until the deadline; at least one unit runs when the deadline allows it.

        The first unit of a call runs whenever the deadline has not passed, whatever the cost
        estimate: the estimate only decays when units run, so skipping on the estimate alone would
        stop a writer for good once one slow unit (a loaded machine) pushed it above the budget.
        """
        wrote = False
        while not self.done:
            now = time.perf_counter()
            if now >= deadline or (wrote and now + self._unit_cost > deadline):
                break
            if self._units is None:
                self._units = self._frame_units(self._pending.pop(0))
            try:
                next(self._units)
            except StopIteration:
                self._units = None
                self.frames_written += 1
            # A slowly decaying maximum: units differ in cost, so a cheap unit must not make the
            # writer start an expensive one right before the deadline.
            cost = time.perf_counter() - now
            self._unit_cost = max(0.9 * self._unit_cost, min(cost, 0.05), 0.003)
            wrote = True
        return self.done

    def run(self) -> None:
        self.step(float("inf"))

    def _frame_units(self, t: int):
        obj, mesh, base = self.obj, self.obj.data, self.base
        anim, idx = self._animation, self._indices
        name = key_name(t)
        keys = mesh.shape_keys
        if keys is None or keys.reference_key is None:
            obj.shape_key_add(name="Basis", from_mix=False)
            obj[PROP_OWN_BASIS] = True
            keys = mesh.shape_keys
            yield
        dpos_t, drot_t, dscale_t = frame_of(anim, t)
        yield
        block = keys.key_blocks.get(name)
        if block is None:
            block = obj.shape_key_add(name=name, from_mix=False)
            yield
            _keyframe_block(keys, block, self.frame_start + t)
            yield
        # positions
        points = key_points(block)
        if idx is None:
            pos = base.means + dpos_t
        else:
            pos = np.empty(base.count * 3, np.float32)
            points.foreach_get("co", pos)
            pos = pos.reshape(-1, 3)
            pos[idx] = base.means[idx] + dpos_t
        points.foreach_set("co", np.ascontiguousarray(pos, np.float32).ravel())
        yield
        # rotations, in chunks
        rname = rot_attr(t)
        if idx is None:
            rot = np.empty((base.count, 4), np.float32)
            for lo in range(0, base.count, ROT_CHUNK):
                hi = min(lo + ROT_CHUNK, base.count)
                rot[lo:hi] = quat_compose(drot_t[lo:hi], base.quats[lo:hi])
                yield
        else:
            rot = get_vector_attribute(mesh, rname, 4) if rname in mesh.attributes else base.quats.copy()
            rot[idx] = quat_compose(drot_t, base.quats[idx])
            yield
        set_vector_attribute(mesh, rname, "QUATERNION", rot)
        # scales
        sname = scale_attr(t)
        if idx is None:
            scale = base.log_scales + dscale_t
        else:
            scale = get_vector_attribute(mesh, sname, 3) if sname in mesh.attributes else base.log_scales.copy()
            scale[idx] = base.log_scales[idx] + dscale_t
        set_vector_attribute(mesh, sname, "FLOAT_VECTOR", scale)
        _shown.pop(obj.name, None)  # the frame handler must re-apply this frame
        yield


def _keyframe_block(keys, block, frame: int) -> None:
    """Key ``block``: 0 on frame−1, 1 on frame, 0 on frame+1, all CONSTANT."""
    for f, v in ((frame - 1, 0.0), (frame, 1.0), (frame + 1, 0.0)):
        block.value = v
        block.keyframe_insert("value", frame=f)
    block.value = 0.0
    fcurve = _key_fcurve(keys, block.name)
    if fcurve is not None:
        for point in fcurve.keyframe_points:
            point.interpolation = "CONSTANT"


def bake_animation(obj, animation: Animation, scene=None, frame_start: int = 1) -> FrameWriter:
    """Bake a whole animation now (blocking): shape keys, keyframes, rotation/scale per frame."""
    writer = FrameWriter(obj, animation.num_frames, frame_start)
    writer.prepare()
    writer.load(animation)
    writer.run()
    if scene is not None:
        writer.set_scene_range(scene)
        if animation.fps:
            scene.render.fps = max(1, int(round(animation.fps)))
            scene.render.fps_base = 1.0
        apply_frame(obj, scene.frame_current)
    obj.data.update()
    return writer


# ---- removal ---------------------------------------------------------------------------------
def remove_frames(obj, first: int) -> None:
    """Remove our shape keys, their F-curves and per-frame attributes for frames ≥ ``first``."""
    mesh = obj.data
    keys = mesh.shape_keys
    if keys is not None:
        fcurves = fcurves_of(keys)
        for block in list(keys.key_blocks):
            if block.name.startswith(KEY_PREFIX) and int(block.name[len(KEY_PREFIX):len(KEY_PREFIX) + 4]) >= first:
                if fcurves is not None:
                    fc = fcurves.find(f'key_blocks["{block.name}"].value')
                    if fc is not None:
                        fcurves.remove(fc)
                obj.shape_key_remove(block)
    for attr in [a.name for a in mesh.attributes if _FRAME_ATTR.match(a.name)]:
        if int(attr[len(KEY_PREFIX):len(KEY_PREFIX) + 4]) >= first:
            mesh.attributes.remove(mesh.attributes[attr])
    _shown.pop(obj.name, None)


PROP_SCENE_RANGE = "animus3d_scene_range"  # (start, end) before "fit scene range", then what it set


def fit_scene_range(obj, scene, frame_start: int, frames: int) -> None:
    """Set the scene's range to the clip, remembering the range it replaces on the object."""
    fitted = (int(frame_start), int(frame_start) + int(frames) - 1)
    if PROP_SCENE_RANGE not in obj:
        obj[PROP_SCENE_RANGE] = [scene.frame_start, scene.frame_end, *fitted]
    else:
        obj[PROP_SCENE_RANGE] = [*list(obj[PROP_SCENE_RANGE])[:2], *fitted]
    scene.frame_start, scene.frame_end = fitted


def restore_scene_range(obj, scene) -> None:
    """Undo :func:`fit_scene_range` if the range is still the one it set."""
    if PROP_SCENE_RANGE not in obj:
        return
    old_start, old_end, fit_start, fit_end = (int(v) for v in obj[PROP_SCENE_RANGE])
    if scene is not None and (scene.frame_start, scene.frame_end) == (fit_start, fit_end):
        scene.frame_start, scene.frame_end = old_start, old_end
    del obj[PROP_SCENE_RANGE]


def clear_animation(obj, scene=None) -> None:
    """Remove our shape keys, their F-curves and per-frame attributes; restore rot/scale and the
    scene range a bake fitted."""
    restore_scene_range(obj, scene)
    mesh = obj.data
    remove_frames(obj, 0)
    keys = mesh.shape_keys
    if keys is not None and obj.get(PROP_OWN_BASIS) and len(keys.key_blocks) == 1:
        obj.shape_key_remove(keys.key_blocks[0])
    if BASE_ROT in mesh.attributes and BASE_SCALE in mesh.attributes:
        _write_standard(mesh, get_vector_attribute(mesh, BASE_ROT, 4), get_vector_attribute(mesh, BASE_SCALE, 3))
        mesh.attributes.remove(mesh.attributes[BASE_ROT])
        mesh.attributes.remove(mesh.attributes[BASE_SCALE])
    for prop in (PROP_FRAMES, PROP_START, PROP_OWN_BASIS):
        if prop in obj:
            del obj[prop]
    _shown.pop(obj.name, None)
    mesh.update()


# ---- frame change: show the current frame's rotation and scale ---------------------------------
_shown: dict[str, int] = {}  # object name -> frame index whose rot/scale the standard attrs hold


def _write_standard(mesh, quats: np.ndarray, log_scales: np.ndarray) -> None:
    for c in range(4):
        set_float_attribute(mesh, f"rot_{c}", quats[:, c])
    for c in range(3):
        set_float_attribute(mesh, f"scale_{c}", log_scales[:, c])


def frame_index(obj, scene_frame: int) -> int:
    """The animation frame shown on ``scene_frame`` (−1: outside the animated range)."""
    t = scene_frame - int(obj.get(PROP_START, 1))
    return t if 0 <= t < baked_frames(obj) else -1


def apply_frame(obj, scene_frame: int) -> None:
    """Make the standard rot/scale attributes hold the values of ``scene_frame``."""
    mesh = obj.data
    t = frame_index(obj, scene_frame)
    if t >= 0 and not (rot_attr(t) in mesh.attributes and scale_attr(t) in mesh.attributes):
        t = -1  # not written yet (a preview in progress)
    if _shown.get(obj.name) == t:
        return
    if t < 0:
        if BASE_ROT not in mesh.attributes:
            return
        quats, scales = get_vector_attribute(mesh, BASE_ROT, 4), get_vector_attribute(mesh, BASE_SCALE, 3)
    else:
        quats, scales = get_vector_attribute(mesh, rot_attr(t), 4), get_vector_attribute(mesh, scale_attr(t), 3)
    _write_standard(mesh, quats, scales)
    _shown[obj.name] = t
    mesh.update()


def on_frame_change(scene, _depsgraph=None) -> None:
    """``frame_change_post`` handler: every animated object shows its current rotation/scale."""
    for obj in scene.objects:
        if obj.type == "MESH" and PROP_FRAMES in obj:
            try:
                apply_frame(obj, scene.frame_current)
            except (KeyError, ValueError):
                continue


def forget_shown() -> None:
    _shown.clear()
