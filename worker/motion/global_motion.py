"""The whole-object part of a motion: one similarity per time (rotation, translation, scale).

A spin, a jump, a slide or a growth moves every Gaussian together. Spread over a HexPlane such a
motion is thousands of per-Gaussian deltas that a noisy score must push in unison; here it is seven
numbers per time knot, which every rendered pixel's gradient reaches at once. The local field then
only has to add what is not rigid (an arm, a head).

The similarity acts about the object's base point (bottom centre of the rest bbox, +Z up), after the
local deltas::

    x_t = exp(s(t)) · R(t) (x + Δx_local − base) + base + τ(t) · position_scale

Rotation vectors, translations and log-scales are linear in time between ``time_resolution`` knots,
and measured from time 0, so the transform is the identity at t = 0 whatever the parameters are.
"""

from __future__ import annotations

import torch
from torch import nn

from .quaternion import quat_from_axis_angle, quat_multiply, quat_to_matrix


def interpolate_knots(knots: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Values of ``knots`` [K, D] (evenly spaced over [0, 1]) at ``times`` [T], linearly → [T, D]."""
    count = knots.shape[0]
    if count == 1:
        return knots.expand(times.shape[0], -1)
    position = times.clamp(0.0, 1.0) * (count - 1)
    lower = position.floor().long().clamp(max=count - 2)
    weight = (position - lower.to(position.dtype)).unsqueeze(-1)
    return knots[lower] * (1.0 - weight) + knots[lower + 1] * weight


class GlobalMotion(nn.Module):
    """Per-time similarity of the whole object; the identity until trained.

    Args:
        base: [3] pivot of rotations and scalings (the rest bbox's bottom centre).
        time_resolution: number of knots over [0, 1].
    """

    def __init__(self, base: torch.Tensor, time_resolution: int) -> None:
        super().__init__()
        self.register_buffer("base", torch.as_tensor(base, dtype=torch.float32).reshape(3).clone())
        knots = max(2, int(time_resolution))
        self.rotation = nn.Parameter(torch.zeros(knots, 3))  # rotation vector, radians
        self.translation = nn.Parameter(torch.zeros(knots, 3))  # in units of the field's position_scale
        self.log_scale = nn.Parameter(torch.zeros(knots, 1))

    def transforms(self, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rotation vectors [T, 3], translations [T, 3], log-scales [T, 1]) relative to time 0."""
        params = torch.cat((self.rotation, self.translation, self.log_scale), dim=-1)
        values = interpolate_knots(params, times) - params[:1]
        return values[:, :3], values[:, 3:6], values[:, 6:]

    def departure_from_rest(self) -> torch.Tensor:
        """Mean square of every knot's rotation vector, translation and log-scale relative to time 0: a
        weak pull to rest, so that what the target does not constrain (a turn towards a single fitting
        camera) stays put instead of drifting under Adam's normalised steps."""
        params = torch.cat((self.rotation, self.translation, self.log_scale), dim=-1)
        return ((params - params[:1]) ** 2).mean()

    def compose(self, means: torch.Tensor, dpos: torch.Tensor, dquat: torch.Tensor, dlogscale: torch.Tensor,
                times: torch.Tensor, position_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The local deltas [T, N, ·] of ``means`` [N, 3] followed by this motion → total deltas."""
        rotvec, translation, log_scale = self.transforms(times)
        quat = quat_from_axis_angle(rotvec)  # [T, 4]
        matrix = quat_to_matrix(quat)  # [T, 3, 3]
        offset = (means - self.base).unsqueeze(0)  # rest position relative to the pivot
        moved = torch.exp(log_scale).unsqueeze(1) * torch.einsum("tij,tnj->tni", matrix, offset + dpos)
        # the new offset minus the rest one: exactly the local deltas while the transform is the identity
        total_dpos = moved - offset + (translation * position_scale).unsqueeze(1)
        return total_dpos, quat_multiply(quat.unsqueeze(1), dquat), dlogscale + log_scale.unsqueeze(1)
