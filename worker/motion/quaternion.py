"""Torch quaternion helpers in (w, x, y, z) order, matching ``animus3d_shared.deformation``.

Also home of :class:`MotionInputError`, the one exception every function of
``animus3d_worker.motion`` raises for bad input (this is the package's lowest module).
"""

from __future__ import annotations

import torch


class MotionInputError(ValueError):
    """An argument of a motion-field function has the wrong shape, type or value."""


def _check_last_dim(name: str, tensor: torch.Tensor, width: int) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise MotionInputError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.ndim < 1 or tensor.shape[-1] != width:
        raise MotionInputError(f"{name} must have shape [..., {width}], got {list(tensor.shape)}")


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a ⊗ b`` of (..., 4) wxyz quaternions, broadcasting leading dims."""
    _check_last_dim("a", a, 4)
    _check_last_dim("b", b, 4)
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )


def quat_normalise(q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale (..., 4) quaternions to unit length (a zero quaternion stays zero)."""
    _check_last_dim("q", q, 4)
    return q / q.norm(dim=-1, keepdim=True).clamp_min(eps)


def quat_identity(*shape: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Identity quaternions (1, 0, 0, 0) of shape ``[*shape, 4]``."""
    q = torch.zeros(*shape, 4, device=device, dtype=dtype)
    q[..., 0] = 1.0
    return q


def quat_from_axis_angle(rotvec: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors (axis × angle in radians) to (..., 4) unit wxyz quaternions.

    Exact at zero: a zero vector gives exactly (1, 0, 0, 0). Gradients are finite everywhere
    (a Taylor expansion replaces sin(θ/2)/θ for tiny angles).
    """
    _check_last_dim("rotvec", rotvec, 3)
    theta_sq = (rotvec * rotvec).sum(dim=-1, keepdim=True)
    small = theta_sq < 1e-8
    # Never take sqrt of a tiny number: its gradient would blow up even where masked out.
    theta = torch.where(small, torch.ones_like(theta_sq), theta_sq).sqrt()
    half = 0.5 * theta
    w = torch.where(small, 1.0 - theta_sq / 8.0, torch.cos(half))
    sin_half_over_theta = torch.where(small, 0.5 - theta_sq / 48.0, torch.sin(half) / theta)
    return quat_normalise(torch.cat((w, rotvec * sin_half_over_theta), dim=-1))


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) wxyz quaternions (normalised here) to (..., 3, 3) rotation matrices."""
    w, x, y, z = quat_normalise(q).unbind(-1)
    rows = (
        torch.stack((1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)), dim=-1),
        torch.stack((2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)), dim=-1),
        torch.stack((2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)), dim=-1),
    )
    return torch.stack(rows, dim=-2)
