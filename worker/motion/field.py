"""The motion field: HexPlane features → small MLP → per-Gaussian deltas, identity at t = 0.

Deltas are differences relative to time 0 of the heads' raw outputs:

- Δposition(x, t) = (pos(x, t) − pos(x, 0)) · position_scale   (world units)
- Δrotation(x, t) = quat_from_axis_angle(rot(x, t) − rot(x, 0)) (unit wxyz)
- Δlog-scale(x, t) = scl(x, t) − scl(x, 0)

so frame 0 is the identity whatever the weights are. Rows whose time is exactly 0 are set to
the identity explicitly, making it bit-exact (not only up to rounding). The heads' last layers
start at zero, so a new field is the identity at every time. The field is continuous in t
(bilinear interpolation along time), so it can be queried at any time in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from .global_motion import GlobalMotion
from .hexplane import HexPlane
from .quaternion import MotionInputError, quat_from_axis_angle, quat_multiply, quat_normalise

BBOX_PADDING = 0.05  # fraction of each extent (plus of the diagonal) added around the bbox


def frame_times(num_frames: int, device=None) -> torch.Tensor:
    """Evenly spaced times of ``num_frames`` frames in [0, 1]: frame 0 at 0, the last at 1."""
    if not isinstance(num_frames, int) or num_frames < 1:
        raise MotionInputError(f"num_frames must be a positive integer, got {num_frames!r}")
    if num_frames == 1:
        return torch.zeros(1, device=device)
    return torch.linspace(0.0, 1.0, num_frames, device=device)


def _as_vec3(name: str, value) -> torch.Tensor:
    try:
        vec = torch.as_tensor(value, dtype=torch.float64).detach().cpu().reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise MotionInputError(f"{name} must be 3 numbers, got {value!r}") from None
    if vec.numel() != 3 or not torch.isfinite(vec).all():
        raise MotionInputError(f"{name} must be 3 finite numbers, got {value!r}")
    return vec


def _positive_float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0.0 < number < float("inf") else None


class MotionField(nn.Module):
    """Deformation field of a splat over normalised time, with an exact identity at t = 0.

    Args:
        bbox_min, bbox_max: the rest splat's bounding box (3 numbers each); padded slightly and
            mapped to the HexPlane's [-1, 1] cube.
        resolution, levels, time_resolution, feature_dim: HexPlane size (see :class:`HexPlane`).
        hidden_dim: width of the MLP trunk.
        position_scale: world length of one unit of the position head; default the bbox diagonal,
            so the same weights mean the same relative motion whatever the asset's size.
        global_motion: add a whole-object similarity per time (:class:`GlobalMotion`, about the
            bbox's bottom centre) after the local deltas; ``self.global_motion`` is None without it.
    """

    def __init__(
        self,
        bbox_min,
        bbox_max,
        *,
        resolution: int = 32,
        levels: int = 2,
        time_resolution: int = 16,
        feature_dim: int = 16,
        hidden_dim: int = 64,
        position_scale: float | None = None,
        global_motion: bool = False,
    ) -> None:
        super().__init__()
        low, high = _as_vec3("bbox_min", bbox_min), _as_vec3("bbox_max", bbox_max)
        if (high < low).any():
            raise MotionInputError(f"bbox_max {high.tolist()} is below bbox_min {low.tolist()}")
        extent = high - low
        diagonal = float(extent.norm())
        if diagonal <= 0.0:
            raise MotionInputError("the bounding box is a single point; a motion field needs some extent")
        scale = _positive_float(position_scale) if position_scale is not None else diagonal
        if scale is None:
            raise MotionInputError(f"position_scale must be a positive finite number, got {position_scale!r}")
        if not isinstance(hidden_dim, int) or hidden_dim < 1:
            raise MotionInputError(f"hidden_dim must be a positive integer, got {hidden_dim!r}")
        pad = BBOX_PADDING * (extent + diagonal)
        self.register_buffer("bbox_min", (low - pad).float())
        self.register_buffer("bbox_max", (high + pad).float())
        self.register_buffer("position_scale", torch.tensor(scale))

        self.hexplane = HexPlane(feature_dim, resolution, levels, time_resolution)
        self.trunk = nn.Sequential(
            nn.Linear(self.hexplane.output_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
        )
        self.position_head = nn.Linear(hidden_dim, 3, bias=False)
        self.rotation_head = nn.Linear(hidden_dim, 3, bias=False)  # axis-angle (radians)
        self.scale_head = nn.Linear(hidden_dim, 3, bias=False)  # log-scale
        # No biases: a constant would cancel in the difference to t = 0 anyway.
        for head in (self.position_head, self.rotation_head, self.scale_head):
            nn.init.zeros_(head.weight)
        base = torch.stack(((low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2])).float()
        self.global_motion = GlobalMotion(base, time_resolution) if global_motion else None

    def local_parameters(self):
        """The HexPlane's and the MLP's parameters (everything but the global motion's)."""
        return [p for name, p in self.named_parameters() if not name.startswith("global_motion.")]

    def normalise_positions(self, means: torch.Tensor) -> torch.Tensor:
        """World positions → the HexPlane's [-1, 1] cube (the padded bbox)."""
        return (means - self.bbox_min) / (self.bbox_max - self.bbox_min) * 2.0 - 1.0

    def forward(self, means: torch.Tensor, times) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deltas of every Gaussian at every time.

        Args:
            means: [N, 3] rest positions (world units).
            times: [T] times in [0, 1] (tensor or sequence of floats).

        Returns:
            ``(dpos [T,N,3], dquat [T,N,4] unit wxyz, dlogscale [T,N,3])``; exactly
            ``(0, (1,0,0,0), 0)`` for every time equal to 0.
        """
        if not isinstance(means, torch.Tensor) or means.ndim != 2 or means.shape[1] != 3:
            shape = list(means.shape) if isinstance(means, torch.Tensor) else type(means).__name__
            raise MotionInputError(f"means must be a [N, 3] tensor, got {shape}")
        if means.shape[0] == 0:
            raise MotionInputError("means is empty")
        times = self._check_times(times, means.device)
        num_times = times.shape[0]

        coords = self.normalise_positions(means.to(self.bbox_min.dtype))
        # Evaluate t = 0 alongside the queried times: row 0 is the reference.
        all_times = torch.cat((times.new_zeros(1), times)) * 2.0 - 1.0
        hidden = self.trunk(self.hexplane(coords, all_times))  # [T+1, N, H]
        raw_pos, raw_rot, raw_scale = (head(hidden) for head in (self.position_head, self.rotation_head, self.scale_head))

        at_zero = (times == 0).view(num_times, 1, 1)
        dpos = (raw_pos[1:] - raw_pos[:1]) * self.position_scale
        dlogscale = raw_scale[1:] - raw_scale[:1]
        dquat = quat_from_axis_angle(raw_rot[1:] - raw_rot[:1])
        if self.global_motion is not None:
            dpos, dquat, dlogscale = self.global_motion.compose(means.to(dpos.dtype), dpos, dquat, dlogscale, times,
                                                                self.position_scale)
        dpos = torch.where(at_zero, 0.0, dpos)
        dlogscale = torch.where(at_zero, 0.0, dlogscale)
        identity = torch.zeros(4, device=dquat.device, dtype=dquat.dtype)
        identity[0] = 1.0  # built on the device: a host tensor here would sync every step
        dquat = torch.where(at_zero, identity, dquat)
        return dpos, dquat, dlogscale

    def plane_regularizer(
        self,
        tv_weight: float = 1.0,
        time_smoothness_weight: float = 1.0,
        time_sparsity_weight: float = 0.0,
    ) -> torch.Tensor:
        """Smoothness of the HexPlane grids (see :meth:`HexPlane.regularizer`); weight it small."""
        return self.hexplane.regularizer(tv_weight, time_smoothness_weight, time_sparsity_weight)

    @staticmethod
    def _check_times(times, device) -> torch.Tensor:
        if not isinstance(times, torch.Tensor):
            try:
                times = torch.as_tensor(times, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError):
                raise MotionInputError(f"times must be a [T] tensor or a sequence of floats, got {times!r}") from None
        if times.ndim != 1 or times.shape[0] == 0:
            raise MotionInputError(f"times must have shape [T] with T >= 1, got {list(times.shape)}")
        times = times.to(device=device, dtype=torch.float32)
        if not bool(((times >= 0.0) & (times <= 1.0)).all()):
            raise MotionInputError("times must lie in [0, 1]")
        return times


def apply_motion(
    means: torch.Tensor,
    quats: torch.Tensor,
    log_scales: torch.Tensor,
    dpos: torch.Tensor,
    dquat: torch.Tensor,
    dlogscale: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deform a rest splat by per-frame deltas (the convention of ``animus3d_shared.deformation``).

    ``means_t = means + dpos``, ``quats_t = normalise(dquat ⊗ quats)``, ``log_scales_t = log_scales + dlogscale``.

    Args:
        means [N,3], quats [N,4] (wxyz), log_scales [N,3]: the rest splat.
        dpos [T,N,3], dquat [T,N,4], dlogscale [T,N,3]: deltas, e.g. from :class:`MotionField`.

    Returns:
        ``(means_t [T,N,3], quats_t [T,N,4], log_scales_t [T,N,3])``.
    """
    rest = {"means": (means, 3), "quats": (quats, 4), "log_scales": (log_scales, 3)}
    deltas = {"dpos": (dpos, 3), "dquat": (dquat, 4), "dlogscale": (dlogscale, 3)}
    for name, (tensor, width) in rest.items():
        if not isinstance(tensor, torch.Tensor) or tensor.ndim != 2 or tensor.shape[1] != width:
            raise MotionInputError(f"{name} must be a [N, {width}] tensor")
    for name, (tensor, width) in deltas.items():
        if not isinstance(tensor, torch.Tensor) or tensor.ndim != 3 or tensor.shape[2] != width:
            raise MotionInputError(f"{name} must be a [T, N, {width}] tensor")
    n = means.shape[0]
    if quats.shape[0] != n or log_scales.shape[0] != n:
        raise MotionInputError("means, quats and log_scales disagree on the Gaussian count")
    if not (dpos.shape[:2] == dquat.shape[:2] == dlogscale.shape[:2]) or dpos.shape[1] != n:
        raise MotionInputError(
            f"deltas must all be [T, {n}, ...], got {list(dpos.shape)}, {list(dquat.shape)}, {list(dlogscale.shape)}"
        )
    means_t = means.unsqueeze(0) + dpos
    quats_t = quat_normalise(quat_multiply(dquat, quats.unsqueeze(0)))
    log_scales_t = log_scales.unsqueeze(0) + dlogscale
    return means_t, quats_t, log_scales_t
