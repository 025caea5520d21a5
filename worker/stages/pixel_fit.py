"""The pixel loss of the stages that fit the field to a clip the prior drew (guide, refinement).

A small prior keeps the object's shape and motion better than its colours: its guide clip of a tan
shirt comes out pink from the first frame on, and not the same pink in every frame (docs/evaluation.md). A plain squared error then makes the field explain colour by moving Gaussians (a
still character "nods" dark hair over its face). With ``colour_match`` each rendered frame is first
mapped by the affine colour transform (3×3 matrix and offset) that brings it closest to the target
frame, so only what no recolouring explains (where things are) pulls on the field.
"""

from __future__ import annotations

import torch

# The pixel-fitting stages weigh their squared error of [0, 1] pixels by this: unweighted it is ~1e-3
# next to ARAP and TV-3D, which then win and pull the field back to rest (a refinement
# without it undoes the guide's motion).
PIXEL_FIT_WEIGHT = 100.0
# Ridge towards the identity map, per pixel of the frame: keeps the map sane on a flat frame.
COLOUR_MAP_RIDGE = 1e-3


def fit_colour_maps(source: torch.Tensor, target: torch.Tensor, ridge: float = COLOUR_MAP_RIDGE) -> torch.Tensor:
    """Per frame, the affine colour map [4, 3] (3×3 matrix over an offset row) that brings ``source``
    [..., 3, H, W] closest to ``target`` (least squares over every pixel, background included, with a
    ridge of ``ridge`` × pixels towards the identity). Computed without gradients: [F, 4, 3]."""
    if source.shape != target.shape or source.shape[-3] != 3:
        raise ValueError(f"colour match needs two [..., 3, H, W] clips of one shape, got {tuple(source.shape)} "
                         f"and {tuple(target.shape)}")
    with torch.no_grad():
        x = _pixels(source.detach().float())
        y = _pixels(target.detach().float())
        design = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)  # [F, P, 4]
        identity = torch.cat([torch.eye(3, device=x.device), torch.zeros(1, 3, device=x.device)])  # [4, 3]
        lam = ridge * x.shape[1]
        gram = design.transpose(1, 2) @ design + lam * torch.eye(4, device=x.device)
        return torch.linalg.solve(gram, design.transpose(1, 2) @ y + lam * identity)


def apply_colour_maps(maps: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """``clip`` [..., 3, H, W] through the per-frame maps [F, 4, 3] (differentiable in ``clip``)."""
    x = _pixels(clip.float())
    mapped = x @ maps[:, :3] + maps[:, 3:]
    return mapped.transpose(-1, -2).reshape(clip.shape)


def _pixels(clip: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] -> [F, H·W, 3], one row of pixels per frame."""
    return clip.flatten(-2).transpose(-1, -2).reshape(-1, clip.shape[-2] * clip.shape[-1], 3)


def pixel_fit_loss(rendered: torch.Tensor, target: torch.Tensor, colour_match: bool,
                   coarse_levels: int = 0) -> torch.Tensor:
    """``PIXEL_FIT_WEIGHT`` × mean squared error of ``rendered`` against ``target`` (both [..., 3, H, W]).

    ``coarse_levels`` > 0: the mean of that error at full size and at 1/2, 1/4 … 1/2^levels size (box
    averages of both clips): a part drawn far from where the object has it (a raised arm) does not
    overlap its rendered self at full size, and only blurred copies pull it there.

    With ``colour_match`` each rendered frame goes through the affine colour map that fits it best to
    the target frame first. The map is fitted from the render to the target, not the other way: a map
    of the target onto the render could turn the whole target white, so that erasing the object (a
    blank render) would cost nothing; a blank render mapped to a target with the object in it cannot
    fit. With the map held at its optimum, the gradient is that of the minimum over maps."""
    rendered = rendered.float()
    target = target.float()
    if colour_match:
        rendered = apply_colour_maps(fit_colour_maps(rendered, target), rendered)
    loss = torch.nn.functional.mse_loss(rendered, target)
    levels = min(coarse_levels, max(0, min(rendered.shape[-2:]).bit_length() - 2))  # down to 2×2 at least
    if levels:
        r, t = rendered.flatten(0, -4), target.flatten(0, -4)  # [N, 3, H, W]
        for _ in range(levels):
            r = torch.nn.functional.avg_pool2d(r, 2, ceil_mode=True)
            t = torch.nn.functional.avg_pool2d(t, 2, ceil_mode=True)
            loss = loss + torch.nn.functional.mse_loss(r, t)
        loss = loss / (levels + 1)
    return PIXEL_FIT_WEIGHT * loss
