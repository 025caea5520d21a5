"""A turn about the vertical, found by search before the guide fit starts (``guide_yaw_search``).

Seen from one camera, a spin is the object's front sliding out of view: a gradient from the pixels
only ever says "a little to the side", so the fit bends or slides the object instead (docs/evaluation.md:
even the ground-truth clip of a spinning animal or vehicle was fitted as a walk or a
slide). Here the rest object is rendered turned by each of ``candidates`` angles about the vertical
through its base, every guide frame is compared with every turned render (colour-matched, as the fit
compares, and shifted onto the frame's foreground centre, so that a slide or a jump is not taken for
a turn), and the cheapest sequence of angles that starts at rest and turns at most ``MAX_STEP``
candidates between frames is found by dynamic programming. If it explains the guide
clearly better than no turn at all, it becomes the starting point of the whole-object motion's
rotation and the gradient fit goes on from there (the guide stage also fits the clip without it and
keeps whichever fit explains the clip better); if not, the guide stage freezes the whole-object
motion at the identity, so that a clip without a turn is fitted as it is without the search.
"""

from __future__ import annotations

import math

import torch

from ..motion.quaternion import quat_from_axis_angle, quat_multiply, quat_to_matrix
from .pixel_fit import apply_colour_maps, fit_colour_maps

MAX_STEP = 2  # candidates the turn may move between consecutive frames
TURN_PENALTY = 0.05  # per candidate step between frames, relative to the mean cost of a frame
MIN_GAIN = 0.25  # the turn must explain the guide this much better than none (fraction of the cost)


def turned_renders(problem, angles: torch.Tensor, view: int) -> torch.Tensor:
    """The rest object turned about the vertical through its base by each of ``angles`` [K] → [K, 3, H, W]."""
    splat = problem.splat
    base = problem.field.global_motion.base
    rotvec = torch.zeros(len(angles), 3, device=splat.means.device, dtype=splat.means.dtype)
    rotvec[:, 2] = angles
    quat = quat_from_axis_angle(rotvec)
    means = torch.einsum("kij,nj->kni", quat_to_matrix(quat), splat.means - base) + base
    quats = quat_multiply(quat.unsqueeze(1), splat.quats.unsqueeze(0))
    log_scales = splat.log_scales.unsqueeze(0).expand(len(angles), -1, -1)
    return problem.render_clips(means, quats, log_scales, (view,))[0]


def foreground_centres(images: torch.Tensor) -> torch.Tensor:
    """Centre of what is not background (white) in each image [B, 3, H, W] → [B, 2] (x, y in [-1, 1])."""
    weight = (1.0 - images.min(dim=1).values).clamp(min=0.0) + 1e-6  # [B, H, W]
    H, W = images.shape[-2:]
    ys = torch.linspace(-1.0, 1.0, H, device=images.device).view(1, H, 1)
    xs = torch.linspace(-1.0, 1.0, W, device=images.device).view(1, 1, W)
    total = weight.sum(dim=(1, 2))
    return torch.stack([(weight * xs).sum(dim=(1, 2)) / total, (weight * ys).sum(dim=(1, 2)) / total], dim=1)


def centred_on(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``images`` [B, 3, H, W] shifted so that their foreground centres sit on the ``targets``' (white fill)."""
    shift = foreground_centres(targets) - foreground_centres(images)  # [B, 2]
    theta = torch.zeros(images.shape[0], 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = -shift
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=True)
    shifted = torch.nn.functional.grid_sample(images - 1.0, grid, align_corners=True, padding_mode="zeros")
    return shifted + 1.0


def frame_costs(turned: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Colour-matched mean squared error of every guide frame against every turned render, each render
    first shifted onto the frame's foreground centre (a slide or a jump is not a turn) → [T, K]."""
    T, K = guide.shape[0], turned.shape[0]
    renders = turned.unsqueeze(0).expand(T, *turned.shape).reshape(T * K, *turned.shape[1:])
    targets = guide.unsqueeze(1).expand(T, K, *guide.shape[1:]).reshape(T * K, *guide.shape[1:])
    renders = centred_on(renders, targets)
    mapped = apply_colour_maps(fit_colour_maps(renders, targets), renders)
    return ((mapped - targets) ** 2).flatten(1).mean(1).reshape(T, K)


def cheapest_turn(costs: torch.Tensor, max_step: int = MAX_STEP, turn_penalty: float = TURN_PENALTY) -> list[int]:
    """The signed candidate steps' cumulative path [T] (frame 0 at 0) minimising the frame costs plus
    ``turn_penalty`` × mean cost per step moved, over candidates on a circle of ``costs.shape[1]``."""
    T, K = costs.shape
    penalty = turn_penalty * float(costs.mean())
    best = {0: (float(costs[0, 0]), [0])}  # unwrapped position -> (cost, path); positions stay in a band
    for t in range(1, T):
        nxt: dict[int, tuple[float, list[int]]] = {}
        for position, (cost, path) in best.items():
            for step in range(-max_step, max_step + 1):
                new = position + step
                total = cost + abs(step) * penalty + float(costs[t, new % K])
                if new not in nxt or total < nxt[new][0]:
                    nxt[new] = (total, path + [new])
        best = nxt
    return min(best.values(), key=lambda item: item[0])[1]


def search_yaw(problem, guide: torch.Tensor, view: int, candidates: int = 16) -> torch.Tensor | None:
    """Per-frame yaw angles [T] (radians, unwrapped, 0 at frame 0) for the guide clip [T, 3, H, W], or
    None when no turn explains it ``MIN_GAIN`` better than standing still."""
    with torch.no_grad():
        angles = torch.arange(candidates, device=guide.device, dtype=torch.float32) * (2 * math.pi / candidates)
        costs = frame_costs(turned_renders(problem, angles, view).float(), guide.float())
    path = cheapest_turn(costs)
    turned_cost = sum(float(costs[t, p % candidates]) for t, p in enumerate(path))
    still_cost = float(costs[:, 0].sum())
    if max(abs(p) for p in path) == 0 or turned_cost > (1.0 - MIN_GAIN) * still_cost:
        return None
    return torch.tensor(path, dtype=torch.float32) * (2 * math.pi / candidates)


def start_from_yaw(global_motion, yaw: torch.Tensor) -> None:
    """Sets the whole-object motion's rotation knots to turn by ``yaw`` [T] (frames evenly over [0, 1])."""
    knots = global_motion.rotation.shape[0]
    frame_times = torch.linspace(0.0, 1.0, len(yaw))
    knot_times = torch.linspace(0.0, 1.0, knots)
    index = torch.searchsorted(frame_times, knot_times).clamp(1, len(yaw) - 1)
    t0, t1 = frame_times[index - 1], frame_times[index]
    w = (knot_times - t0) / (t1 - t0)
    values = yaw[index - 1] * (1 - w) + yaw[index] * w
    with torch.no_grad():
        global_motion.rotation.zero_()
        global_motion.rotation[:, 2] = values.to(global_motion.rotation.device)
