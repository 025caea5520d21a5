"""DDIM inversion and sampling: exact maths on a known noise, reconstruction with the tiny prior."""

import pytest
import torch

from animus3d_worker.priors import ddim


@pytest.fixture(scope="module")
def alphas():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    return torch.cumprod(1.0 - betas, 0)


def test_grid_runs_from_zero_to_t():
    assert ddim.timestep_grid(500, 10, 1000) == list(range(0, 501, 50))
    assert ddim.timestep_grid(3, 10, 1000) == [0, 1, 2, 3]  # duplicates dropped
    assert ddim.timestep_grid(0, 4, 1000) == [0]
    with pytest.raises(ValueError):
        ddim.timestep_grid(1000, 10, 1000)
    with pytest.raises(ValueError):
        ddim.timestep_grid(500, 0, 1000)


def test_constant_noise_makes_ddim_exact(alphas):
    # When the predictor always returns the true noise, every DDIM step is exact in both directions.
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 3, 4, 4, generator=g), torch.randn(2, 4, 3, 4, 4, generator=g)
    seen = []

    def eps_fn(x, t):
        seen.append(t)
        return noise

    x_t = ddim.invert(eps_fn, x0, alphas, 600, 6)
    assert seen == [0, 100, 200, 300, 400, 500]
    expected = alphas[600].sqrt() * x0 + (1 - alphas[600]).sqrt() * noise
    torch.testing.assert_close(x_t, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ddim.implied_noise(x_t, x0, alphas[600]), noise, rtol=1e-4, atol=1e-4)
    seen.clear()
    torch.testing.assert_close(ddim.sample(eps_fn, x_t, alphas, 600, 6), x0, rtol=1e-4, atol=1e-4)
    assert seen == [600, 500, 400, 300, 200, 100]


def test_half_precision_input_keeps_dtype(alphas):
    x0 = torch.randn(1, 4, 2, 4, 4).to(torch.bfloat16)
    out = ddim.invert(lambda x, t: torch.zeros_like(x), x0, alphas, 300, 3)
    assert out.dtype == torch.bfloat16


@pytest.fixture(scope="module")
def clip(tiny_prior):
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 8, 4, 4, generator=g)  # unit scale, like real scaled SD latents
    text = tiny_prior.encode_text(["a dog running", "a cat walking"])
    return latents, text


def _relative_error(a, b):
    return float((a - b).norm() / b.norm())


def test_inversion_then_sampling_reconstructs(tiny_prior, clip):
    latents, text = clip
    x_t, _ = tiny_prior.ddim_invert(latents, text, t_end=500, steps=10)
    recon10 = tiny_prior.ddim_sample(x_t, text, t_start=500, steps=10)
    # Measured on the tiny random prior: 10 steps to t=500 -> 2.8% relative error (20 -> 1.4%,
    # 50 -> 0.65%; first order in the step size). Bound: 5% at 10 steps, and 20 steps must halve-ish it.
    err10 = _relative_error(recon10, latents)
    assert err10 < 0.05
    x_t20, _ = tiny_prior.ddim_invert(latents, text, t_end=500, steps=20)
    err20 = _relative_error(tiny_prior.ddim_sample(x_t20, text, t_start=500, steps=20), latents)
    assert err20 < 0.7 * err10
    # Without inversion (fresh noise to the same level) the "reconstruction" is far off.
    noisy = tiny_prior.add_noise(latents, torch.randn(latents.shape, generator=torch.Generator().manual_seed(5)), 500)
    assert _relative_error(tiny_prior.ddim_sample(noisy, text, 500, 10), latents) > 5 * err10


def test_inverted_noise_is_deterministic_and_not_random(tiny_prior, clip):
    latents, text = clip
    x_t, eps = tiny_prior.ddim_invert(latents, text, t_end=400, steps=8)
    x_t2, eps2 = tiny_prior.ddim_invert(latents, text, t_end=400, steps=8)
    assert torch.equal(x_t, x_t2) and torch.equal(eps, eps2)
    assert x_t.shape == eps.shape == latents.shape
    # eps is the noise that the forward process needs to reach x_t.
    torch.testing.assert_close(tiny_prior.add_noise(latents, eps, 400), x_t, rtol=1e-4, atol=1e-4)
    random = torch.randn(latents.shape, generator=torch.Generator().manual_seed(9))
    assert _relative_error(eps, random) > 0.5
    other, _ = tiny_prior.ddim_invert(latents, text, t_end=400, steps=4)
    assert not torch.allclose(other, x_t)


def test_guidance_takes_conditional_then_unconditional(tiny_prior, clip):
    latents, text = clip
    uncond = tiny_prior.encode_text(["", ""])
    both = torch.cat([text, uncond])
    plain, _ = tiny_prior.ddim_invert(latents, text, 300, 3)
    scale_one, _ = tiny_prior.ddim_invert(latents, both, 300, 3, guidance_scale=1.0)
    torch.testing.assert_close(scale_one, plain)
    guided = tiny_prior.ddim_sample(plain, both, 300, 3, guidance_scale=7.5)
    assert guided.shape == latents.shape and not torch.allclose(guided, tiny_prior.ddim_sample(plain, text, 300, 3))
    with pytest.raises(ValueError, match="guidance_scale"):
        tiny_prior.ddim_sample(plain, text, 300, 3, guidance_scale=7.5)


def test_anchored_sampling_keeps_the_known_frames_and_lets_the_rest_follow(alphas):
    """Replacement: the first frame ends exactly at the given latent; the model sees the anchored
    frame at every level (so what it predicts for the other frames can depend on it)."""
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(1, 4, 5, 3, 3, generator=g), torch.randn(1, 4, 5, 3, 3, generator=g)
    x_t = torch.randn(2, 4, 5, 3, 3, generator=g)
    seen_first = []

    def copy_first_frame(x, t):  # a "temporal" predictor: every frame's ε is the first frame's
        seen_first.append(x[:, :, :1].clone())
        return x[:, :, :1].expand_as(x) * 0.1

    anchor = ddim.leading_frames_anchor(x0, noise, 1)
    out = ddim.sample(copy_first_frame, x_t, alphas, 800, 4, anchor=anchor)
    torch.testing.assert_close(out[:, :, :1], x0[:, :, :1].expand(2, -1, -1, -1, -1))
    assert not torch.allclose(out[:, :, 1:], x0[:, :, 1:].expand(2, -1, -1, -1, -1))
    start = alphas[800].sqrt() * x0[:, :, :1] + (1 - alphas[800]).sqrt() * noise[:, :, :1]
    torch.testing.assert_close(seen_first[0], start.expand(2, -1, -1, -1, -1))  # anchored before the first step
    free = ddim.sample(copy_first_frame, x_t, alphas, 800, 4)
    assert not torch.allclose(free[:, :, 1:], out[:, :, 1:])  # the anchor reached the other frames
    with pytest.raises(ValueError, match="anchor 1 to 5 frames"):
        ddim.leading_frames_anchor(x0, noise, 6)
