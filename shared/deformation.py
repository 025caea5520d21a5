"""Per-frame deformation of a splat: the one convention both sides use.

An animation of T frames over N Gaussians is three arrays:

- ``delta_position`` [T, N, 3] float32, added to the means: ``x_t = x + dx_t``;
- ``delta_rotation`` [T, N, 4] float32, unit quaternions (w, x, y, z) composed on the left:
  ``q_t = normalise(dq_t ⊗ q)`` (identity = (1, 0, 0, 0));
- ``delta_scale``    [T, N, 3] float32, added to the log-scales: ``s_t = s + ds_t``.

Frame 0 is the identity for an animation produced by the pipeline, but the maths here does not
assume it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import all_finite


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a ⊗ b of (..., 4) quaternions in (w, x, y, z) order, broadcasting."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b), -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quat_normalise(q: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    q = np.asarray(q)
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), eps)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) wxyz quaternions (normalised here) to (..., 3, 3) rotation matrices."""
    w, x, y, z = np.moveaxis(quat_normalise(q), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


@dataclass(frozen=True)
class Animation:
    """Per-frame deltas for every Gaussian of one splat (see the module docstring)."""

    delta_position: np.ndarray  # [T, N, 3]
    delta_rotation: np.ndarray  # [T, N, 4]
    delta_scale: np.ndarray  # [T, N, 3]
    fps: float = 8.0

    def __post_init__(self) -> None:
        dp, dr, ds = self.delta_position, self.delta_rotation, self.delta_scale
        for name, arr, width in (("delta_position", dp, 3), ("delta_rotation", dr, 4), ("delta_scale", ds, 3)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
                raise ValueError(f"{name} must be a float32 numpy array")
            if arr.ndim != 3 or arr.shape[2] != width:
                raise ValueError(f"{name} must have shape [T, N, {width}], got {list(arr.shape)}")
            if not all_finite(arr):
                raise ValueError(f"{name} contains NaN or infinite values")
        if not (dp.shape[:2] == dr.shape[:2] == ds.shape[:2]):
            raise ValueError("delta arrays disagree on frames or Gaussian count")
        if dp.shape[0] < 1:
            raise ValueError("an animation needs at least one frame")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError("fps must be positive")

    @property
    def num_frames(self) -> int:
        return int(self.delta_position.shape[0])

    @property
    def num_gaussians(self) -> int:
        return int(self.delta_position.shape[1])

    @classmethod
    def identity(cls, frames: int, count: int, fps: float = 8.0) -> "Animation":
        rot = np.zeros((frames, count, 4), np.float32)
        rot[..., 0] = 1.0
        return cls(
            np.zeros((frames, count, 3), np.float32), rot, np.zeros((frames, count, 3), np.float32), fps
        )

    def frame_means(self, means: np.ndarray, frame: int) -> np.ndarray:
        return (means + self.delta_position[frame]).astype(np.float32)

    def frame_quats(self, quats: np.ndarray, frame: int) -> np.ndarray:
        return quat_normalise(quat_multiply(self.delta_rotation[frame], quats)).astype(np.float32)

    def frame_log_scales(self, log_scales: np.ndarray, frame: int) -> np.ndarray:
        return (log_scales + self.delta_scale[frame]).astype(np.float32)
