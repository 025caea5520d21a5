"""Multi-resolution HexPlane (k-planes): a 4D (x, y, z, t) feature field from six 2D grids.

Each spatial level holds three spatial planes (xy, xz, yz) and three space-time planes
(xt, yt, zt). A point's feature at one level is the elementwise product of the six bilinearly
sampled planes; levels double the spatial resolution (time resolution stays fixed) and their
features are concatenated.

Planes start near 1 (spatial: 1 ± small noise, space-time: exactly 1), so the product starts
well-conditioned and, at initialisation, does not depend on time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .quaternion import MotionInputError

# Which coordinates index each plane's (width, height) axes; coordinate 3 is time.
SPATIAL_PLANES = ((0, 1), (0, 2), (1, 2))  # xy, xz, yz
TIME_PLANES = ((0, 3), (1, 3), (2, 3))  # xt, yt, zt


def _sample_planes(planes: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample P stacked planes [P, C, H, W] at [P, M, 2] points in [-1, 1] → [M, C] product."""
    sampled = F.grid_sample(
        planes, uv.unsqueeze(2), mode="bilinear", padding_mode="border", align_corners=True
    )  # [P, C, M, 1]
    return sampled.squeeze(-1).prod(dim=0).transpose(0, 1)


class HexPlane(nn.Module):
    """Six-plane space-time feature grid, concatenated over spatial resolution levels.

    Args:
        feature_dim: channels per plane (and per level in the output).
        resolution: spatial resolution of the coarsest level's planes.
        levels: number of spatial levels; level ``l`` has ``resolution * 2**l`` cells per axis.
        time_resolution: samples along time in every space-time plane.
        init_noise: half-width of the uniform noise around 1 for the spatial planes.
    """

    def __init__(
        self,
        feature_dim: int = 16,
        resolution: int = 32,
        levels: int = 2,
        time_resolution: int = 16,
        init_noise: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("feature_dim", feature_dim, 1),
            ("resolution", resolution, 2),
            ("levels", levels, 1),
            ("time_resolution", time_resolution, 2),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise MotionInputError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= init_noise < 1.0:
            raise MotionInputError(f"init_noise must be in [0, 1), got {init_noise!r}")
        self.feature_dim = feature_dim
        self.levels = levels
        self.time_resolution = time_resolution
        self.resolutions = tuple(resolution * 2**level for level in range(levels))
        self.spatial_planes = nn.ParameterList()
        self.time_planes = nn.ParameterList()
        for res in self.resolutions:
            noise = (torch.rand(len(SPATIAL_PLANES), feature_dim, res, res) * 2 - 1) * init_noise
            self.spatial_planes.append(nn.Parameter(1.0 + noise))
            self.time_planes.append(nn.Parameter(torch.ones(len(TIME_PLANES), feature_dim, time_resolution, res)))

    @property
    def output_dim(self) -> int:
        return self.feature_dim * self.levels

    def spatial_features(self, coords: torch.Tensor) -> list[torch.Tensor]:
        """Per-level products of the spatial planes at [N, 3] coords in [-1, 1] → list of [N, C]."""
        uv = torch.stack([coords[:, list(axes)] for axes in SPATIAL_PLANES])  # [3, N, 2]
        return [_sample_planes(planes, uv) for planes in self.spatial_planes]

    def forward(self, coords: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Features at every (point, time) pair.

        Args:
            coords: [N, 3] positions normalised to [-1, 1] (outside values clamp to the border).
            times: [T] times normalised to [-1, 1].

        Returns:
            [T, N, feature_dim * levels] features.
        """
        if coords.ndim != 2 or coords.shape[1] != 3:
            raise MotionInputError(f"coords must have shape [N, 3], got {list(coords.shape)}")
        if times.ndim != 1:
            raise MotionInputError(f"times must have shape [T], got {list(times.shape)}")
        n, t = coords.shape[0], times.shape[0]
        spatial = self.spatial_features(coords)
        # Space-time sample points: (axis coordinate, time) for every (time, point) pair.
        grid_t = times.to(coords.dtype).view(t, 1).expand(t, n).reshape(-1)
        uv = torch.stack(
            [torch.stack((coords[:, axis].repeat(t), grid_t), dim=-1) for axis, _ in TIME_PLANES]
        )  # [3, T*N, 2]
        features = []
        for level, planes in enumerate(self.time_planes):
            temporal = _sample_planes(planes, uv).view(t, n, self.feature_dim)
            features.append(temporal * spatial[level].unsqueeze(0))
        return torch.cat(features, dim=-1)

    def regularizer(
        self,
        tv_weight: float = 1.0,
        time_smoothness_weight: float = 1.0,
        time_sparsity_weight: float = 0.0,
    ) -> torch.Tensor:
        """Smoothness of the grids (4DGaussians-style), averaged over levels.

        - total variation: mean squared first difference along both axes of every plane;
        - time smoothness: mean squared second difference along time of the space-time planes;
        - time sparsity: mean |plane − 1| of the space-time planes (1 = no motion).
        """
        total = self.spatial_planes[0].new_zeros(())
        for spatial, temporal in zip(self.spatial_planes, self.time_planes):
            if tv_weight:
                total = total + tv_weight * (_plane_tv(spatial) + _plane_tv(temporal))
            if time_smoothness_weight:
                second = temporal[:, :, 2:] - 2 * temporal[:, :, 1:-1] + temporal[:, :, :-2]
                total = total + time_smoothness_weight * second.square().mean()
            if time_sparsity_weight:
                total = total + time_sparsity_weight * (temporal - 1.0).abs().mean()
        return total / self.levels


def _plane_tv(planes: torch.Tensor) -> torch.Tensor:
    """Mean squared first difference along height plus along width of [P, C, H, W] planes."""
    dh = planes[:, :, 1:, :] - planes[:, :, :-1, :]
    dw = planes[:, :, :, 1:] - planes[:, :, :, :-1]
    return dh.square().mean() + dw.square().mean()
