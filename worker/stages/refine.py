"""Stage 3: refinement — more frames, more detail, SDEdit-style.

The motion field is continuous in time, so it is queried at ``refine_frame_multiplier`` × the
frames. The dense clip is rendered, noised to ``refine_strength`` and denoised by the refinement
prior (a larger video model when one is configured) under the motion prompt and decoded; the field
is then pulled towards that refined clip in pixel space (weighted as the guide fit is), with the same
ARAP and TV-3D regularisers.
No gradient goes through the larger model or its VAE, so the stage costs little memory; the refined
target is recomputed every ``REFRESH_EVERY`` steps, as the field moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from animus3d_shared.settings import JobSettings

from ..events import JobEvents
from .core import Conditioning, MotionProblem, choose_views, fit_step
from .pixel_fit import pixel_fit_loss

REFRESH_EVERY = 10
DENOISE_STEPS = 4


@dataclass
class RefineOutcome:
    frames: int
    losses: dict[str, list[float]] = field(default_factory=dict)


def sdedit_target(prior, latents: torch.Tensor, text: torch.Tensor, negative: torch.Tensor, strength: float,
                  guidance_scale: float, generator: torch.Generator) -> torch.Tensor:
    """Noise ``latents`` to ``strength`` and denoise them with the prior: the refined clip."""
    t_start = int(round(strength * (prior.num_train_timesteps - 1)))
    with torch.no_grad():
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        t = torch.full((latents.shape[0],), t_start, device=latents.device, dtype=torch.long)
        x_t = prior.add_noise(latents, noise, t)
        emb = torch.cat([text.expand(latents.shape[0], -1, -1), negative.expand(latents.shape[0], -1, -1)])
        return prior.ddim_sample(x_t, emb, t_start, DENOISE_STEPS, lora=False, guidance_scale=guidance_scale)


def refine_motion(prior, problem: MotionProblem, cond: Conditioning, settings: JobSettings, events: JobEvents,
                  generator: torch.Generator, on_step=None) -> RefineOutcome:
    frames = problem.frames * settings.refine_frame_multiplier
    optimiser = problem.optimiser(settings.refine_lr, settings.refine_global_lr)
    outcome = RefineOutcome(frames=frames)
    total = settings.refine_steps
    target = None
    views = None
    for step in range(total):
        events.check_cancelled()
        deltas, (means, quats, log_scales) = problem.deform(frames)
        if target is None or step % REFRESH_EVERY == 0:
            views = tuple(choose_views(step, problem.cameras, settings, generator).tolist())
        clips = problem.render_clips(means, quats, log_scales, views)
        if target is None or step % REFRESH_EVERY == 0:
            with torch.no_grad():
                latents = prior.encode_frames(clips.detach().to(prior.dtype))
                refined = sdedit_target(prior, latents, cond.motion, cond.negative, settings.refine_strength,
                                        settings.guidance_scale, generator)
                target = prior.decode_latents(refined).float()
        terms = {"refine": pixel_fit_loss(clips, target, settings.fit_colour_match, settings.fit_coarse_levels)}
        terms.update(problem.regularisers(deltas, means, settings, generator))
        fit_step("refine", step, total, terms, settings, optimiser, outcome.losses, events, on_step)
    return outcome
