"""The prior's own judgement of a clip: how well each caption explains it, by denoising error.

Noise a clip's latents at a few timesteps and ask the prior for ε̂ under each caption; the caption
whose ε̂ is closest to the true noise explains the clip best (the "diffusion classifier" of Li et al.
2023). Every clip and caption sees the same noise at a timestep, so the comparison is paired: the
differences between captions, and between clips, are not drowned by the noise draw.
"""

from __future__ import annotations

import torch

TIMESTEPS = (100, 300, 500, 700, 900)


@torch.no_grad()
def denoising_errors(prior, latents: torch.Tensor, texts: torch.Tensor, *, timesteps=TIMESTEPS,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean squared ε̂ error of each clip ``latents`` ``[B, C, T, h, w]`` under each text embedding
    ``texts`` ``[P, L, D]``, averaged over ``timesteps``: ``[B, P]`` (CPU, float32)."""
    clips, captions = latents.shape[0], texts.shape[0]
    latents = latents.float()
    errors = torch.zeros(clips, captions)
    for t in timesteps:
        noise = torch.randn((1, *latents.shape[1:]), generator=generator).to(latents.device)
        noise = noise.expand_as(latents)
        noisy = prior.add_noise(latents, noise, t).repeat_interleave(captions, 0)
        eps = prior.predict_noise(noisy, t, texts.repeat(clips, 1, 1)).float()
        squared = (eps - noise.repeat_interleave(captions, 0)) ** 2
        errors += squared.flatten(1).mean(1).view(clips, captions).cpu()
    return errors / len(timesteps)


def prompt_preference(prior, latents: torch.Tensor, motion: torch.Tensor, static: torch.Tensor, *,
                      timesteps=TIMESTEPS, seed: int = 0) -> torch.Tensor:
    """How much better the motion prompt explains each clip than the static one: ``[B]``, lower is
    more the prompted motion (a still clip is explained better by the static prompt: positive)."""
    generator = torch.Generator().manual_seed(seed)
    errors = denoising_errors(prior, latents, torch.cat([motion, static]), timesteps=timesteps, generator=generator)
    return errors[:, 0] - errors[:, 1]
