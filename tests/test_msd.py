"""The MSD update: hand-computed gradient, and zero gradient when the static prior equals the base."""

import torch

from animus3d_shared.settings import JobSettings
from animus3d_worker.stages.core import Conditioning
from animus3d_worker.stages.msd import (msd_gradient, msd_loss, predict_scores, timestep_bounds)


def test_msd_gradient_matches_hand_computation():
    alphas_cumprod = torch.tensor([0.9, 0.5, 0.2])
    eps_dyn = torch.tensor([1.0, -2.0, 0.5, 3.0]).reshape(1, 1, 1, 2, 2)
    eps_sta = torch.tensor([0.5, -1.0, 0.5, 1.0]).reshape(1, 1, 1, 2, 2)
    t = torch.tensor([1])
    grad = msd_gradient(eps_dyn, eps_sta, alphas_cumprod, t)
    # w(t) = 1 - ᾱ_t = 0.5 ; ε_dyn - ε_static = [0.5, -1, 0, 2]
    expected = torch.tensor([0.25, -0.5, 0.0, 1.0]).reshape(1, 1, 1, 2, 2)
    torch.testing.assert_close(grad, expected)


def test_surrogate_loss_gradient_is_exactly_the_msd_gradient():
    latents = torch.randn(2, 4, 3, 2, 2, requires_grad=True)
    grad = torch.randn(2, 4, 3, 2, 2)
    msd_loss(latents, grad).backward()
    torch.testing.assert_close(latents.grad, grad)


def test_nan_in_scores_does_not_reach_the_field():
    eps = torch.full((1, 1, 1, 1, 2), float("nan"))
    grad = msd_gradient(eps, torch.zeros_like(eps), torch.tensor([0.5]), torch.tensor([0]))
    assert torch.isfinite(grad).all()


def test_timestep_range_anneals_down():
    s = JobSettings.from_preset("test", t_max=0.98, t_anneal_to=0.5)
    assert timestep_bounds(0, 10, s) == (s.t_min, 0.98)
    lo, hi = timestep_bounds(9, 10, s)
    assert abs(hi - 0.5) < 1e-9


def test_gradient_vanishes_when_the_lora_prior_equals_the_base(tiny_prior):
    from animus3d_worker.priors import lora

    prior = tiny_prior
    lora.remove_lora(prior.unet)
    lora.inject_lora(prior.unet, rank=4, alpha=4.0)  # fresh LoRA: B = 0, so LoRA model == base model
    try:
        settings = JobSettings.from_preset("test", guidance_scale=1.0)
        prompt = prior.encode_text(["a toy robot"])
        cond = Conditioning(motion=prompt, negative=prior.encode_text([""]), static=prompt)
        x_t = torch.randn(1, prior.latent_channels, 4, 4, 4, generator=torch.Generator().manual_seed(0))
        t = torch.tensor([500])
        eps_dyn, eps_sta = predict_scores(prior, x_t, t, cond, settings, use_lora=True)
        grad = msd_gradient(eps_dyn, eps_sta, prior.alphas_cumprod, t)
        assert grad.abs().max() < 1e-5
        # ... and does not vanish for a motion prompt that differs from the static one
        cond_motion = Conditioning(motion=prior.encode_text(["a toy robot jumps"]), negative=cond.negative, static=prompt)
        eps_dyn, eps_sta = predict_scores(prior, x_t, t, cond_motion, settings, use_lora=True)
        assert msd_gradient(eps_dyn, eps_sta, prior.alphas_cumprod, t).abs().max() > 1e-4
    finally:
        lora.remove_lora(prior.unet)


def test_static_negative_gives_no_update_for_a_prompt_that_asks_for_no_motion(tiny_prior):
    """Guidance away from the static description amplifies only what the motion prompt adds to it.

    With a text static prior and a motion prompt equal to the static one, ε_dynamic = ε_static at any
    guidance scale; plain CFG (empty negative) amplifies the description itself and moves the asset."""
    prior = tiny_prior
    still = prior.encode_text(["a toy robot, standing still"])
    cond = Conditioning(motion=still, negative=prior.encode_text([""]), static=still)
    x_t = torch.randn(1, prior.latent_channels, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([500])

    def update(**overrides):
        settings = JobSettings.from_preset("test", static_prior="text", guidance_scale=7.5, **overrides)
        eps_dyn, eps_sta = predict_scores(prior, x_t, t, cond, settings, use_lora=False)
        return msd_gradient(eps_dyn, eps_sta, prior.alphas_cumprod, t).abs().max()

    assert update(guidance_negative="static") < 1e-5
    assert update(guidance_negative="empty") > 1e-3


def test_unknown_guidance_negative_is_refused():
    import pytest

    from animus3d_shared.settings import SettingsError

    with pytest.raises(SettingsError, match="guidance_negative"):
        JobSettings.from_preset("test", guidance_negative="nothing")
