"""Resample a clip to the scene's frame rate, so a bake keeps the scene's fps.

A clip of ``T`` frames at ``fps_in`` lasts ``(T - 1) / fps_in`` seconds; at ``fps_out`` it becomes
``floor((T - 1) * fps_out / fps_in) + 1`` frames, frame ``k`` sampling the clip at time
``k / fps_out``: positions and log-scales interpolated linearly, rotations by normalised linear
interpolation of the sign-aligned quaternions (exact at the clip's own frames).

:class:`Retimed` computes one frame at a time (:meth:`Retimed.frame`), so the bake's frame writer
spreads the work over timer ticks like any other per-frame work.
"""

from __future__ import annotations

import numpy as np

from .animus3d_shared.deformation import Animation


def retimed_frame_count(frames: int, fps_in: float, fps_out: float) -> int:
    if frames < 1 or fps_in <= 0 or fps_out <= 0:
        raise ValueError(f"cannot retime {frames} frames from {fps_in} to {fps_out} fps")
    return int(np.floor((frames - 1) * fps_out / fps_in + 1e-6)) + 1


class Retimed:
    """``source`` seen at ``fps`` frames a second; frames are computed when asked for."""

    def __init__(self, source: Animation, fps: float):
        self.source = source
        self.fps = float(fps)
        self.num_frames = retimed_frame_count(source.num_frames, float(source.fps), self.fps)
        self.num_gaussians = source.num_gaussians

    def frame(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Δposition [N,3], Δrotation [N,4] wxyz, Δlog-scale [N,3]) of frame ``k``."""
        src = self.source
        s = min(k * float(src.fps) / self.fps, src.num_frames - 1)
        i0 = int(np.floor(s + 1e-9))
        w = np.float32(s - i0)
        if w < 1e-6 or i0 + 1 >= src.num_frames:
            return src.delta_position[i0], src.delta_rotation[i0], src.delta_scale[i0]
        i1 = i0 + 1
        q0, q1 = src.delta_rotation[i0], src.delta_rotation[i1]
        q1 = np.where((q0 * q1).sum(-1, keepdims=True) < 0, -q1, q1)
        q = q0 * (1 - w) + q1 * w
        q /= np.linalg.norm(q, axis=-1, keepdims=True)
        return (src.delta_position[i0] * (1 - w) + src.delta_position[i1] * w, q.astype(np.float32),
                src.delta_scale[i0] * (1 - w) + src.delta_scale[i1] * w)

    def animation(self) -> Animation:
        """Every frame at once (for checks and exports, not for a timer tick)."""
        frames = [self.frame(k) for k in range(self.num_frames)]
        return Animation(*(np.stack([f[i] for f in frames]).astype(np.float32) for i in range(3)), self.fps)


def retime(animation, fps_out: float):
    """``animation`` (an Animation or a Retimed) seen at ``fps_out``: itself when the rates agree."""
    if isinstance(animation, Retimed):
        animation = animation.source
    if abs(float(animation.fps) - fps_out) < 1e-6:
        return animation
    return Retimed(animation, fps_out)


def frame_of(animation, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame ``t`` of an Animation or a Retimed."""
    if isinstance(animation, Retimed):
        return animation.frame(t)
    return animation.delta_position[t], animation.delta_rotation[t], animation.delta_scale[t]
