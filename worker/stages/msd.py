"""Stage 2: Motion Score Distillation.

Each step renders the T frames of the deformed splat, encodes them to latents, finds the noise for
a timestep t by DDIM inversion of those latents (or draws random noise: the paper's ablation), and
pushes the latents along

    grad = w(t) · (ε_dynamic − ε_static)

where ε_dynamic is the base prior's prediction under the motion prompt with classifier-free
guidance, and ε_static the LoRA prior's prediction under the static prompt (or the base prior's,
for the text-only ablation). ARAP keeps neighbourhoods rigid; TV-3D keeps motion smooth in time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from animus3d_shared.settings import JobSettings

from ..events import JobEvents
from ..priors.mixed_lora import predict_noise_mixed
from ..timing import SectionTimer, section
from .core import Conditioning, MotionProblem, choose_views, report_losses, weighted_total

# ---- the MSD update itself (pure functions, unit-tested) -----------------------------------------
def msd_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """w(t) = 1 − ᾱ_t, DreamFusion's weighting, shaped to broadcast over [B, C, F, h, w]."""
    return (1.0 - alphas_cumprod[t]).reshape(-1, 1, 1, 1, 1)


def msd_gradient(eps_dynamic: torch.Tensor, eps_static: torch.Tensor, alphas_cumprod: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
    """The MSD gradient on the latents: w(t)·(ε_dynamic − ε_static), NaNs zeroed."""
    grad = msd_weight(alphas_cumprod, t).to(eps_dynamic.dtype) * (eps_dynamic - eps_static)
    return torch.nan_to_num(grad.float(), nan=0.0, posinf=0.0, neginf=0.0)


def msd_loss(latents: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A surrogate loss whose gradient w.r.t. ``latents`` is exactly ``grad``."""
    target = (latents.float() - grad).detach()
    return 0.5 * ((latents.float() - target) ** 2).sum()


def timestep_bounds(step: int, total: int, settings: JobSettings) -> tuple[float, float]:
    """The [lo, hi] range of normalised timesteps at ``step``; hi anneals down if enabled."""
    hi = settings.t_max
    if settings.t_anneal and total > 1:
        hi = settings.t_max + (settings.t_anneal_to - settings.t_max) * step / (total - 1)
    return settings.t_min, max(hi, settings.t_min + 1e-3)


# ---- the stage ------------------------------------------------------------------------------
@dataclass
class MsdOutcome:
    losses: dict[str, list[float]] = field(default_factory=dict)


def estimate_noise(prior, latents: torch.Tensor, t: torch.Tensor, t_int: int, static_text: torch.Tensor,
                   settings: JobSettings, use_lora: bool, generator: torch.Generator,
                   static_model=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, ε) for the rendered latents: DDIM inversion under the static prior, or random noise.

    ``static_model``: a prior whose UNet already has the LoRA merged in (used instead of switching
    LoRA layers on ``prior``)."""
    with torch.no_grad():
        if settings.noise_mode == "ddim_inversion":
            model, lora_on = (static_model, False) if static_model is not None else (prior, use_lora)
            return model.ddim_invert(latents, static_text.expand(latents.shape[0], -1, -1), t_int,
                                     settings.inversion_steps, lora=lora_on)
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        return prior.add_noise(latents, noise, t), noise


def guidance_negative(cond: Conditioning, settings: JobSettings) -> torch.Tensor:
    """The text that classifier-free guidance on ε_dynamic steers away from (``settings.guidance_negative``)."""
    return cond.static if settings.guidance_negative == "static" else cond.negative


def predict_scores(prior, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, settings: JobSettings,
                   use_lora: bool, static_model=None) -> tuple[torch.Tensor, torch.Tensor]:
    """ε_dynamic (with CFG) and ε_static in as few forwards as possible.

    With a LoRA-merged ``static_model`` (GPU): one batch-2 forward of the base model and one batch-1
    forward of the merged copy, both free of LoRA overhead. Without it (CPU): one batch-3 forward with
    LoRA gated per sample. ``settings.batched_scores=False`` is the reference: one forward each."""
    b = x_t.shape[0]
    motion = cond.motion.expand(b, -1, -1)
    negative = guidance_negative(cond, settings).expand(b, -1, -1)
    static = cond.static.expand(b, -1, -1)
    tt = t.expand(b)
    latents3, t3, text3 = torch.cat([x_t, x_t, x_t]), torch.cat([tt, tt, tt]), torch.cat([motion, negative, static])
    with torch.no_grad():
        if not settings.batched_scores:  # one forward per prediction: the reference path
            three = torch.cat([prior.predict_noise(x_t, tt, motion, lora=False),
                               prior.predict_noise(x_t, tt, negative, lora=False),
                               prior.predict_noise(x_t, tt, static, lora=use_lora)])
        elif use_lora and static_model is not None:
            three = torch.cat([prior.predict_noise(latents3[: 2 * b], t3[: 2 * b], text3[: 2 * b], lora=False),
                               static_model.predict_noise(x_t, tt, static, lora=False)])
        elif use_lora:
            mask = torch.ones(3 * b, device=x_t.device)
            mask[: 2 * b] = 0.0  # on the device: the gate then never copies from the host
            three = predict_noise_mixed(prior, latents3, t3, text3, mask)
        else:
            three = prior.predict_noise(latents3, t3, text3, lora=False)
        eps_cond, eps_uncond, eps_static = three[:b], three[b : 2 * b], three[2 * b :]
        eps_dynamic = eps_uncond + settings.guidance_scale * (eps_cond - eps_uncond)
    return eps_dynamic, eps_static


def predict_dynamic(prior, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, settings: JobSettings) -> torch.Tensor:
    """ε_dynamic alone (classifier-free guided), for the plain-SDS baseline."""
    b = x_t.shape[0]
    with torch.no_grad():
        both = prior.predict_noise(torch.cat([x_t, x_t]), t.expand(2 * b),
                                   torch.cat([cond.motion.expand(b, -1, -1),
                                              guidance_negative(cond, settings).expand(b, -1, -1)]), lora=False)
    return both[b:] + settings.guidance_scale * (both[:b] - both[b:])


def optimise_motion(prior, problem: MotionProblem, cond: Conditioning, settings: JobSettings, events: JobEvents,
                    generator: torch.Generator, on_step=None, timer: SectionTimer | None = None,
                    static_model=None) -> MsdOutcome:
    """Runs ``settings.msd_steps`` MSD steps on ``problem.field``.

    ``static_model``: optional LoRA-merged copy of ``prior`` for ε_static and the inversion."""
    use_lora = settings.static_prior == "lora" and settings.score_mode == "msd"
    optimiser = problem.optimiser(settings.msd_lr, settings.global_lr)
    outcome = MsdOutcome()
    total = settings.msd_steps
    log_every = max(1, total // 200)
    reuse = None  # (views, t, t_int, eps) of the last inversion, for amortised inversion
    for step in range(total):
        events.check_cancelled()
        with section(timer, "field"):
            deltas, (means, quats, log_scales) = problem.deform(problem.frames)
        fresh = reuse is None or settings.noise_mode != "ddim_inversion" or step % settings.inversion_every == 0
        if fresh:
            views = tuple(choose_views(step, problem.cameras, settings, generator).tolist())
            lo, hi = timestep_bounds(step, total, settings)
            u = lo + (hi - lo) * float(torch.rand((), generator=generator))
            t_int = int(round(u * (prior.num_train_timesteps - 1)))  # drawn on the host: no device sync
            t = torch.full((1,), t_int, device=means.device, dtype=torch.long)
        else:
            views, t, t_int, eps = reuse
        with section(timer, "render"):
            clips = problem.render_clips(means, quats, log_scales, views)
        with section(timer, "encode"):
            latents = prior.encode_frames(clips.to(prior.dtype))
        with section(timer, "inversion"):
            if fresh:
                x_t, eps = estimate_noise(prior, latents.detach(), t, t_int, cond.static, settings, use_lora, generator,
                                          static_model=static_model if use_lora and settings.batched_scores else None)
                reuse = (views, t, t_int, eps)
            else:  # the same noise the last inversion found, applied to the current latents
                x_t = prior.add_noise(latents.detach(), eps, t)
        with section(timer, "guidance"):
            if settings.score_mode == "sds":  # the baseline: subtract the noise itself, no static prior
                eps_dynamic = predict_dynamic(prior, x_t, t, cond, settings)
                eps_static = eps
            else:
                eps_dynamic, eps_static = predict_scores(prior, x_t, t, cond, settings, use_lora, static_model)
            grad = msd_gradient(eps_dynamic, eps_static, prior.alphas_cumprod, t)

        with section(timer, "regularisers"):
            terms = {"msd": msd_loss(latents, grad) / latents.shape[0]}
            for name, value in problem.regularisers(deltas, means, settings, generator).items():
                terms[name] = value
            total_loss = weighted_total("msd", terms, settings)
        with section(timer, "backward"):
            optimiser.zero_grad(set_to_none=True)
            total_loss.backward()
            optimiser.step()

        if step % log_every == 0 or step == total - 1:
            report_losses("msd", step, total, terms, outcome.losses, events, {"grad_norm": float(grad.norm())})
        if on_step is not None:
            on_step(step + 1, total)
    return outcome
