"""Deterministic DDIM (η = 0) inversion and sampling on an arbitrary sub-range of timesteps.

Both directions walk the same grid of noise levels: level 0 is the clean latent (ᾱ = 1, the model
is queried at timestep 0), levels 1..steps are ``round(linspace(0, t, steps + 1))[1:]``. Inversion
goes up the grid, sampling comes down it, so sampling after inversion reconstructs the latents up
to DDIM's usual discretisation error (ε is evaluated at the start of each step in both directions).

The noise predictor is any callable ``eps_fn(x, timestep: int) -> ε`` of ``x``'s shape; the maths
runs in float32 and results are returned in ``x``'s dtype.
"""

from __future__ import annotations

from typing import Callable

import torch

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
# Replaces what is known of the sample at a noise level: (x, ᾱ) -> x (float32 in and out).
Anchor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def timestep_grid(t: int, steps: int, num_train_timesteps: int) -> list[int]:
    """``steps + 1`` increasing integer timesteps from 0 to ``t`` (duplicates removed)."""
    if steps < 1:
        raise ValueError(f"DDIM needs at least 1 step, got {steps}")
    if not 0 <= t < num_train_timesteps:
        raise ValueError(f"timestep must be in [0, {num_train_timesteps - 1}], got {t}")
    grid = torch.linspace(0, t, steps + 1).round().long().tolist()
    out: list[int] = []
    for value in grid:
        if not out or value != out[-1]:
            out.append(int(value))
    return out


def _level_alpha(alphas_cumprod: torch.Tensor, grid: list[int], level: int) -> torch.Tensor:
    # Level 0 is the clean latent itself, whatever ᾱ at timestep 0 is.
    if level == 0:  # torch.ones is a fill kernel; new_tensor(1.0) would copy from the host and sync
        return torch.ones((), device=alphas_cumprod.device, dtype=alphas_cumprod.dtype)
    return alphas_cumprod[grid[level]]


def ddim_step(x: torch.Tensor, eps: torch.Tensor, alpha_from: torch.Tensor, alpha_to: torch.Tensor) -> torch.Tensor:
    """One η = 0 DDIM move of ``x`` from noise level ᾱ_from to ᾱ_to given the predicted ε (float32)."""
    x0 = (x - (1.0 - alpha_from).sqrt() * eps) / alpha_from.sqrt()
    return alpha_to.sqrt() * x0 + (1.0 - alpha_to).sqrt() * eps


def invert(eps_fn: EpsFn, x0: torch.Tensor, alphas_cumprod: torch.Tensor, t_end: int, steps: int) -> torch.Tensor:
    """Runs DDIM from the clean ``x0`` up to timestep ``t_end``; returns x_{t_end} in ``x0``'s dtype."""
    alphas = alphas_cumprod.to(device=x0.device, dtype=torch.float32)
    grid = timestep_grid(t_end, steps, alphas.shape[0])
    x = x0.float()
    for level in range(len(grid) - 1):
        eps = eps_fn(x.to(x0.dtype), grid[level]).float()
        x = ddim_step(x, eps, _level_alpha(alphas, grid, level), _level_alpha(alphas, grid, level + 1))
    return x.to(x0.dtype)


def sample(eps_fn: EpsFn, x_t: torch.Tensor, alphas_cumprod: torch.Tensor, t_start: int, steps: int,
           anchor: Anchor | None = None) -> torch.Tensor:
    """Runs DDIM from ``x_t`` at timestep ``t_start`` down to the clean latent; returns x_0.

    ``anchor`` (optional) overwrites the known part of the sample at the start and after every step,
    the replacement method of conditional sampling (see ``leading_frames_anchor``)."""
    alphas = alphas_cumprod.to(device=x_t.device, dtype=torch.float32)
    grid = timestep_grid(t_start, steps, alphas.shape[0])
    keep = anchor or (lambda x, alpha: x)
    x = keep(x_t.float(), _level_alpha(alphas, grid, len(grid) - 1))
    for level in range(len(grid) - 1, 0, -1):
        eps = eps_fn(x.to(x_t.dtype), grid[level]).float()
        x = ddim_step(x, eps, _level_alpha(alphas, grid, level), _level_alpha(alphas, grid, level - 1))
        x = keep(x, _level_alpha(alphas, grid, level - 1))
    return x.to(x_t.dtype)


def leading_frames_anchor(x0: torch.Tensor, noise: torch.Tensor, frames: int) -> Anchor:
    """An anchor holding the first ``frames`` frames of video latents ``[B, C, T, h, w]`` to ``x0``'s,
    noised with ``noise`` to each level (√ᾱ·x0 + √(1−ᾱ)·noise): the rest of the clip is sampled to
    agree with them through the model's temporal layers, as a video model continues a given frame."""
    if not 1 <= frames <= x0.shape[2]:
        raise ValueError(f"can anchor 1 to {x0.shape[2]} frames, got {frames}")
    known_x0, known_noise = x0[:, :, :frames].float(), noise[:, :, :frames].float()

    def anchor(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        known = alpha.sqrt() * known_x0 + (1.0 - alpha).sqrt() * known_noise
        return torch.cat([known.expand(x.shape[0], -1, -1, -1, -1), x[:, :, frames:]], dim=2)

    return anchor


def implied_noise(x_t: torch.Tensor, x0: torch.Tensor, alpha_t: torch.Tensor) -> torch.Tensor:
    """The ε for which the forward process maps ``x0`` to ``x_t``: (x_t − √ᾱ·x0)/√(1−ᾱ)."""
    alpha_t = alpha_t.to(device=x_t.device, dtype=torch.float32)
    eps = (x_t.float() - alpha_t.sqrt() * x0.float()) / (1.0 - alpha_t).sqrt()
    return eps.to(x_t.dtype)
