"""Baking an animation into a splat object, in small time-bounded units.

Layout on the object (documented in docs/blender.md; the node group is in :mod:`.motion`):

- per-frame point attributes ``animus3d_f{t}_pos`` (FLOAT_VECTOR, absolute positions ``x + dx_t``),
  ``animus3d_f{t}_rot`` (QUATERNION, ``normalise(dq_t ⊗ q)``) and ``animus3d_f{t}_scale``
  (FLOAT_VECTOR, ``s + ds_t``, log-space); the mesh itself keeps the original splat;
- the *Animus3D Motion* modifier's ``Clip Frame`` input keyed in the object's Action: −1 on
  ``start − 1``, ``t`` on ``start + t``, −1 on ``start + frames`` (CONSTANT);
- a live preview writes ``animus3d_p{t}_*`` and keys ``Preview Frame`` instead, with the
  modifier's ``Preview`` input on; the finished bake replaces it, cancel and failure remove it;
- custom properties ``animus3d_frames`` / ``animus3d_frame_start`` (a finished bake) and
  ``animus3d_preview_frames`` / ``animus3d_preview_start`` (a preview) on the object.

The same :class:`FrameWriter` serves live previews (driven from the timer tick with a deadline) and
the final bake (run to completion).
"""

from __future__ import annotations

import re
import time

import numpy as np

from . import motion
from .animus3d_shared.deformation import Animation
from .retime import frame_of
from .splat_mesh import get_float_attribute, get_positions, get_vector_attribute, set_vector_attribute

PROP_FRAMES = "animus3d_frames"
PROP_START = "animus3d_frame_start"
PROP_PREVIEW_FRAMES = "animus3d_preview_frames"
PROP_PREVIEW_START = "animus3d_preview_start"
ROT_CHUNK = 40_000  # Gaussians per rotation unit (about 3 ms of numpy on a laptop core)
_FRAME_ATTR = re.compile(r"^(animus3d_[fp])(\d+)_(pos|rot|scale)$")


def pos_attr(t: int, prefix: str = motion.BAKE_PREFIX) -> str:
    return motion.attr_name(prefix, t, "pos")


def rot_attr(t: int, prefix: str = motion.BAKE_PREFIX) -> str:
    return motion.attr_name(prefix, t, "rot")


def scale_attr(t: int, prefix: str = motion.BAKE_PREFIX) -> str:
    return motion.attr_name(prefix, t, "scale")


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


# ---- base state ------------------------------------------------------------------------------
class BaseState:
    """The object's rest state: positions, rotations, log-scales (read once per job). The mesh
    always holds the original splat: the motion modifier changes only the evaluated copy."""

    def __init__(self, obj):
        mesh = obj.data
        self.means = get_positions(mesh)
        self.quats = np.stack([get_float_attribute(mesh, f"rot_{c}") for c in range(4)], axis=1)
        self.log_scales = np.stack([get_float_attribute(mesh, f"scale_{c}") for c in range(3)], axis=1)
        self.count = self.means.shape[0]


def baked_frames(obj) -> int:
    """Frames of the finished bake (a preview does not count)."""
    return int(obj.get(PROP_FRAMES, 0)) if obj is not None else 0


def preview_frames(obj) -> int:
    """Frames of the live preview the object shows (0: none)."""
    return int(obj.get(PROP_PREVIEW_FRAMES, 0)) if obj is not None else 0


# ---- writer ----------------------------------------------------------------------------------
class FrameWriter:
    """Writes frames of an animation into ``obj`` unit by unit (see the module docstring).

    ``load(animation, indices)`` queues every frame; ``step(deadline)`` writes units until the
    ``time.perf_counter()`` deadline would be passed and returns True once everything is written.
    ``indices`` (for subsampled previews) names the Gaussians the animation covers; the others
    keep what they had. A preview writer (``preview=True``) writes the preview data set and keys it
    at once, so scrubbing plays the frames written so far; a bake writer's frames become visible
    only in :meth:`finish`, which keys the clip and removes the preview.
    """

    def __init__(self, obj, frames: int, frame_start: int = 1, base: BaseState | None = None, preview: bool = False):
        self.obj = obj
        self.frames = int(frames)
        self.frame_start = int(frame_start)
        self.preview = bool(preview)
        self.prefix = motion.PREVIEW_PREFIX if preview else motion.BAKE_PREFIX
        self.base = base if base is not None else BaseState(obj)
        self._animation: Animation | None = None
        self._indices: np.ndarray | None = None
        self._pending: list[int] = []
        self._units = None
        self._unit_cost = 0.006
        self.frames_written = 0

    # -- structure
    def prepare(self) -> None:
        """Add the motion modifier; a preview writer also keys the preview and switches it on."""
        import bpy

        obj = self.obj
        motion.ensure_modifier(bpy, obj)
        if not self.preview:
            return
        if (preview_frames(obj), int(obj.get(PROP_PREVIEW_START, self.frame_start))) != (self.frames, self.frame_start):
            remove_frames(obj, self.prefix, self.frames)
            motion.key_clip(obj, motion.PREVIEW_FRAME, self.frame_start, self.frames, fcurves_of)
        obj[PROP_PREVIEW_FRAMES] = self.frames
        obj[PROP_PREVIEW_START] = self.frame_start
        motion.set_input(obj, motion.PREVIEW, True)

    def finish(self) -> None:
        """Make a written bake the object's animation: key the clip, drop frames of an older,
        longer bake, remove the preview. A preview writer has nothing to finish."""
        if self.preview:
            return
        obj = self.obj
        remove_frames(obj, self.prefix, self.frames)
        motion.key_clip(obj, motion.CLIP_FRAME, self.frame_start, self.frames, fcurves_of)
        obj[PROP_FRAMES] = self.frames
        obj[PROP_START] = self.frame_start
        discard_preview(obj)

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

    def _read_or(self, name: str, width: int, default: np.ndarray) -> np.ndarray:
        mesh = self.obj.data
        return get_vector_attribute(mesh, name, width) if name in mesh.attributes else default.copy()

    def _frame_units(self, t: int):
        mesh, base = self.obj.data, self.base
        anim, idx, prefix = self._animation, self._indices, self.prefix
        dpos_t, drot_t, dscale_t = frame_of(anim, t)
        yield
        # positions
        if idx is None:
            pos = base.means + dpos_t
        else:
            pos = self._read_or(pos_attr(t, prefix), 3, base.means)
            pos[idx] = base.means[idx] + dpos_t
        set_vector_attribute(mesh, pos_attr(t, prefix), "FLOAT_VECTOR", pos)
        yield
        # rotations, in chunks
        if idx is None:
            rot = np.empty((base.count, 4), np.float32)
            for lo in range(0, base.count, ROT_CHUNK):
                hi = min(lo + ROT_CHUNK, base.count)
                rot[lo:hi] = quat_compose(drot_t[lo:hi], base.quats[lo:hi])
                yield
        else:
            rot = self._read_or(rot_attr(t, prefix), 4, base.quats)
            rot[idx] = quat_compose(drot_t, base.quats[idx])
            yield
        set_vector_attribute(mesh, rot_attr(t, prefix), "QUATERNION", rot)
        # scales
        if idx is None:
            scale = base.log_scales + dscale_t
        else:
            scale = self._read_or(scale_attr(t, prefix), 3, base.log_scales)
            scale[idx] = base.log_scales[idx] + dscale_t
        set_vector_attribute(mesh, scale_attr(t, prefix), "FLOAT_VECTOR", scale)
        mesh.update_tag()
        yield


def bake_animation(obj, animation: Animation, scene=None, frame_start: int = 1) -> FrameWriter:
    """Bake a whole animation now (blocking); with ``scene``, set its range and fps to the clip."""
    writer = FrameWriter(obj, animation.num_frames, frame_start)
    writer.prepare()
    writer.load(animation)
    writer.run()
    writer.finish()
    if scene is not None:
        writer.set_scene_range(scene)
        if animation.fps:
            scene.render.fps = max(1, int(round(animation.fps)))
            scene.render.fps_base = 1.0
    obj.data.update()
    return writer


# ---- removal ---------------------------------------------------------------------------------
def remove_frames(obj, prefix: str, first: int) -> None:
    """Remove the per-frame attributes of data set ``prefix`` for frames ≥ ``first``."""
    mesh = obj.data
    for name in [a.name for a in mesh.attributes]:
        m = _FRAME_ATTR.match(name)
        if m and m.group(1) == prefix and int(m.group(2)) >= first:
            mesh.attributes.remove(mesh.attributes[name])


def discard_preview(obj) -> bool:
    """Remove a live preview (its attributes, keys and properties). True when there was one."""
    had = preview_frames(obj) > 0 or any(_is_preview_attr(a.name) for a in obj.data.attributes)
    remove_frames(obj, motion.PREVIEW_PREFIX, 0)
    motion.remove_keys(obj, motion.PREVIEW_FRAME, fcurves_of)
    motion.set_input(obj, motion.PREVIEW, False)
    for prop in (PROP_PREVIEW_FRAMES, PROP_PREVIEW_START):
        if prop in obj:
            del obj[prop]
    obj.data.update_tag()
    return had


def _is_preview_attr(name: str) -> bool:
    m = _FRAME_ATTR.match(name)
    return m is not None and m.group(1) == motion.PREVIEW_PREFIX


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
    """Remove the bake and any preview (attributes, keys, the motion modifier) and the scene range
    a bake fitted; the mesh itself always holds the original splat."""
    restore_scene_range(obj, scene)
    discard_preview(obj)
    remove_frames(obj, motion.BAKE_PREFIX, 0)
    motion.remove_keys(obj, motion.CLIP_FRAME, fcurves_of)
    mod = obj.modifiers.get(motion.MODIFIER_NAME)
    if mod is not None:
        obj.modifiers.remove(mod)
    for prop in (PROP_FRAMES, PROP_START):
        if prop in obj:
            del obj[prop]
    obj.data.update()
