"""The fast score paths give the same ε as the plain ones: per-sample LoRA gating and a LoRA-merged copy."""

import torch

from animus3d_worker.priors import lora
from animus3d_worker.priors.mixed_lora import predict_noise_mixed


def perturbed_lora(prior, seed=0):
    lora.remove_lora(prior.unet)
    params = lora.inject_lora(prior.unet, rank=4, alpha=4.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return params


def inputs(prior, batch):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, prior.latent_channels, 3, 4, 4, generator=g)
    text = prior.encode_text(["a robot waves", "", "a robot, standing still"][:batch])
    return x, torch.tensor([400] * batch), text


def test_per_sample_lora_gate_matches_separate_forwards(tiny_prior):
    prior = tiny_prior
    perturbed_lora(prior)
    try:
        x, t, text = inputs(prior, 3)
        mixed = predict_noise_mixed(prior, x, t, text, torch.tensor([0.0, 0.0, 1.0]))
        off = prior.predict_noise(x[:2], t[:2], text[:2], lora=False)
        on = prior.predict_noise(x[2:], t[2:], text[2:], lora=True)
        torch.testing.assert_close(mixed, torch.cat([off, on]), atol=1e-5, rtol=1e-4)
        assert (on - prior.predict_noise(x[2:], t[2:], text[2:], lora=False)).abs().max() > 1e-4  # LoRA matters
    finally:
        lora.remove_lora(prior.unet)


def test_merged_copy_matches_the_lora_model_and_leaves_the_original_alone(tiny_prior):
    prior = tiny_prior
    perturbed_lora(prior, seed=2)
    try:
        x, t, text = inputs(prior, 2)
        with_lora = prior.predict_noise(x, t, text, lora=True)
        static = prior.with_unet(lora.merged_copy(prior.unet))
        assert not lora.has_lora(static.unet)
        torch.testing.assert_close(static.predict_noise(x, t, text), with_lora, atol=1e-5, rtol=1e-4)
        assert lora.has_lora(prior.unet)
        torch.testing.assert_close(prior.predict_noise(x, t, text, lora=True), with_lora)
    finally:
        lora.remove_lora(prior.unet)
