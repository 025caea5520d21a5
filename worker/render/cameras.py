"""Pinhole cameras that frame a bounding box: one front view plus an orbit.

World frame is Blender's (right-handed, +Z up). Cameras follow the OpenCV convention that gsplat
takes: ``viewmats`` map world to camera coordinates with x right, y down, z forward; ``Ks`` are
pixel intrinsics whose principal point is the image centre (pixel centres sit at ``i + 0.5``).

Index 0 is the FRONT view: on -Y, level with the bbox centre, looking towards +Y. Indices
``1..orbit_views`` circle the vertical axis through the bbox centre at ``elevation_deg``, starting
at the front azimuth and turning counter-clockwise seen from above (towards +X first). Every camera
sits at the same distance, chosen so that the bbox's bounding sphere fits the field of view with a
margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

FRAMING_MARGIN = 1.1  # distance factor over the one that makes the bounding sphere touch the fov
MIN_RADIUS = 1e-3  # a bbox that is a single point still gets a sensible camera distance


class CameraError(ValueError):
    """Bad camera parameters (resolution, bbox, angles, indices)."""


@dataclass(frozen=True)
class Cameras:
    """A batch of C pinhole cameras sharing one image size.

    viewmats: [C, 4, 4] float32, world -> camera (OpenCV: x right, y down, z forward).
    Ks: [C, 3, 3] float32 pixel intrinsics.
    """

    viewmats: torch.Tensor
    Ks: torch.Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.viewmats.ndim != 3 or self.viewmats.shape[1:] != (4, 4):
            raise CameraError(f"viewmats must be [C,4,4], got {tuple(self.viewmats.shape)}")
        if self.Ks.ndim != 3 or self.Ks.shape[1:] != (3, 3) or self.Ks.shape[0] != self.viewmats.shape[0]:
            raise CameraError(f"Ks must be [C,3,3] with C={self.viewmats.shape[0]}, got {tuple(self.Ks.shape)}")
        if int(self.width) < 1 or int(self.height) < 1:
            raise CameraError(f"image size must be positive, got {self.width}x{self.height}")

    def __len__(self) -> int:
        return int(self.viewmats.shape[0])

    @property
    def count(self) -> int:
        """Number of cameras C."""
        return len(self)

    @property
    def device(self) -> torch.device:
        return self.viewmats.device

    def to(self, device: torch.device | str) -> "Cameras":
        """The same cameras with their tensors on ``device``."""
        return Cameras(self.viewmats.to(device), self.Ks.to(device), self.width, self.height)

    def select(self, indices: Sequence[int] | torch.Tensor | int) -> "Cameras":
        """The cameras at ``indices`` (an int, a sequence of ints or an integer tensor), in that order."""
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1).to(self.viewmats.device)
        if index.numel() == 0:
            raise CameraError("select needs at least one camera index")
        count = len(self)
        if bool(((index < -count) | (index >= count)).any()):
            raise CameraError(f"camera index out of range for {count} cameras: {index.tolist()}")
        return Cameras(self.viewmats[index], self.Ks[index], self.width, self.height)

    def centres(self) -> torch.Tensor:
        """Camera positions in world coordinates, [C, 3]."""
        rot = self.viewmats[:, :3, :3]
        trans = self.viewmats[:, :3, 3]
        return -(rot.transpose(1, 2) @ trans.unsqueeze(-1)).squeeze(-1)


def look_at_viewmat(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """World->camera matrix (OpenCV axes) of a camera at ``eye`` looking at ``target`` with ``up`` upwards."""
    forward = target - eye
    norm = np.linalg.norm(forward)
    if norm <= 0:
        raise CameraError("camera eye and target coincide")
    forward = forward / norm
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise CameraError("camera looks straight along the up axis; its roll is undefined")
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    view = np.eye(4)
    view[:3, :3] = rot
    view[:3, 3] = -rot @ eye
    return view


def intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """Pixel intrinsics with square pixels and ``fov_deg`` across the larger image side."""
    focal = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2)
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def make_cameras(
    bbox_min,
    bbox_max,
    *,
    resolution: int = 256,
    orbit_views: int = 8,
    elevation_deg: float = 10.0,
    fov_deg: float = 40.0,
    device: torch.device | str = "cpu",
) -> Cameras:
    """The front camera (index 0) plus ``orbit_views`` orbit cameras framing the bbox, square images.

    bbox_min / bbox_max: 3 numbers each (numpy arrays, tensors or sequences), world coordinates.
    """
    lo = np.asarray(torch.as_tensor(bbox_min).detach().cpu(), dtype=np.float64).reshape(-1)
    hi = np.asarray(torch.as_tensor(bbox_max).detach().cpu(), dtype=np.float64).reshape(-1)
    if lo.shape != (3,) or hi.shape != (3,):
        raise CameraError(f"bbox_min and bbox_max must have 3 values, got {lo.shape} and {hi.shape}")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (hi < lo).any():
        raise CameraError(f"bbox must be finite with min <= max, got {lo.tolist()} .. {hi.tolist()}")
    if int(resolution) != resolution or resolution < 1:
        raise CameraError(f"resolution must be a positive int, got {resolution!r}")
    if int(orbit_views) != orbit_views or orbit_views < 0:
        raise CameraError(f"orbit_views must be a non-negative int, got {orbit_views!r}")
    if not -90.0 < elevation_deg < 90.0:
        raise CameraError(f"elevation_deg must lie strictly between -90 and 90, got {elevation_deg}")
    if not 0.0 < fov_deg < 180.0:
        raise CameraError(f"fov_deg must lie strictly between 0 and 180, got {fov_deg}")

    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, MIN_RADIUS)
    distance = FRAMING_MARGIN * radius / math.sin(math.radians(fov_deg) / 2)

    eyes = [centre + distance * np.array([0.0, -1.0, 0.0])]
    elevation = math.radians(elevation_deg)
    for k in range(int(orbit_views)):
        azimuth = 2 * math.pi * k / orbit_views
        direction = np.array([
            math.sin(azimuth) * math.cos(elevation),
            -math.cos(azimuth) * math.cos(elevation),
            math.sin(elevation),
        ])
        eyes.append(centre + distance * direction)

    viewmats = np.stack([look_at_viewmat(eye, centre) for eye in eyes])
    Ks = np.broadcast_to(intrinsics(int(resolution), int(resolution), fov_deg), (len(eyes), 3, 3))
    return Cameras(
        viewmats=torch.tensor(viewmats, dtype=torch.float32, device=device),
        Ks=torch.tensor(np.ascontiguousarray(Ks), dtype=torch.float32, device=device),
        width=int(resolution),
        height=int(resolution),
    )
