"""The pixel loss of the stages that fit the field to a clip the prior drew (guide, refinement).

A small prior keeps the object's shape and motion better than its colours: its guide clip of a tan
shirt comes out pink from the first frame on, and not the same pink in every frame (docs/evaluation.md,
tenth session). A plain squared error then makes the field explain colour by moving Gaussians (a
still character "nods" dark hair over its face). With ``colour_match`` each target frame is first
mapped by the affine colour transform (3×3 matrix and offset) that brings it closest to the rendered
frame, so only what no recolouring explains (where things are) pulls on the field.
"""

from __future__ import annotations

import torch

# The pixel-fitting stages weigh their squared error of [0, 1] pixels by this: unweighted it is ~1e-3
# next to ARAP and TV-3D, which then win and pull the field back to rest (the refinement did, undoing
# the guide's motion: docs/evaluation.md, ninth session).
PIXEL_FIT_WEIGHT = 100.0
# Ridge towards the identity map, per pixel of the frame: keeps the map sane on a flat frame.
COLOUR_MAP_RIDGE = 1e-3


def affine_colour_match(target: torch.Tensor, reference: torch.Tensor, ridge: float = COLOUR_MAP_RIDGE) -> torch.Tensor:
    """``target`` [..., 3, H, W] recoloured per frame by the affine map that fits it best to ``reference``.

    Least squares over every pixel of a frame (background included, so white stays white), with a
    ridge of ``ridge`` × pixels towards the identity; no gradient flows through the map (at the
    optimum the loss's gradient with respect to ``reference`` is the same as with the map held)."""
    if target.shape != reference.shape or target.shape[-3] != 3:
        raise ValueError(f"colour match needs two [..., 3, H, W] clips of one shape, got {tuple(target.shape)} "
                         f"and {tuple(reference.shape)}")
    lead = target.shape[:-3]
    with torch.no_grad():
        x = target.detach().float().flatten(-2).transpose(-1, -2).reshape(-1, target.shape[-2] * target.shape[-1], 3)
        y = reference.detach().float().flatten(-2).transpose(-1, -2).reshape(x.shape)
        pixels = x.shape[1]
        design = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)  # [F, P, 4]
        identity = torch.cat([torch.eye(3, device=x.device), torch.zeros(1, 3, device=x.device)])  # [4, 3]
        lam = ridge * pixels
        gram = design.transpose(1, 2) @ design + lam * torch.eye(4, device=x.device)
        maps = torch.linalg.solve(gram, design.transpose(1, 2) @ y + lam * identity)  # [F, 4, 3]
        mapped = (design @ maps).clamp(0.0, 1.0)  # [F, P, 3]
    return mapped.transpose(-1, -2).reshape(*lead, 3, target.shape[-2], target.shape[-1])


def pixel_fit_loss(rendered: torch.Tensor, target: torch.Tensor, colour_match: bool) -> torch.Tensor:
    """``PIXEL_FIT_WEIGHT`` × mean squared error of ``rendered`` against ``target`` (both [..., 3, H, W]),
    the target recoloured to the render frame by frame first when ``colour_match``."""
    rendered = rendered.float()
    target = target.float()
    if colour_match:
        target = affine_colour_match(target, rendered)
    return PIXEL_FIT_WEIGHT * torch.nn.functional.mse_loss(rendered, target)
