"""Stage 1: the LoRA static prior learns the static renders and touches nothing else."""

import torch

from animus3d_shared.settings import JobSettings
from animus3d_worker.events import JobEvents
from animus3d_worker.priors import lora
from animus3d_worker.render import make_cameras
from animus3d_worker.splat_tensors import SplatTensors
from animus3d_worker.stages.static_prior import fit_static_prior, render_static_clips


def fixed_eval_loss(prior, latents, text, seed=0, draws=8):
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for _ in range(draws):
            noise = torch.randn(latents.shape, generator=g)
            t = torch.randint(100, 900, (1,), generator=g)
            eps = prior.predict_noise(prior.add_noise(latents, noise, t), t, text, lora=True)
            total += float(torch.nn.functional.mse_loss(eps, noise))
    return total / draws


def test_lora_fit_lowers_the_loss_and_trains_only_lora(tiny_prior, tmp_path):
    from animus3d_shared.samples import make_test_blob

    prior = tiny_prior
    splat = make_test_blob(seed=1, count=800)
    tensors = SplatTensors.from_splat(splat, "cpu")
    lo, hi = tensors.bbox
    settings = JobSettings.from_preset("test", lora_steps=60, lora_lr=3e-3, orbit_views=0, resolution=32)
    cams = make_cameras(lo, hi, resolution=32, orbit_views=0)
    base_before = {n: p.detach().clone() for n, p in prior.unet.named_parameters()}

    lora.remove_lora(prior.unet)
    lora.inject_lora(prior.unet, rank=settings.lora_rank, alpha=settings.lora_alpha)
    clips = render_static_clips(tensors, cams, settings.frames)
    latents = prior.encode_frames(clips[:1]).detach()
    text = prior.encode_text(["a blob, standing still, static"])
    before = fixed_eval_loss(prior, latents, text)

    outcome = fit_static_prior(prior, splat, tensors, cams, settings, "a blob, standing still, static", JobEvents(),
                               cache_dir=tmp_path)
    after = fixed_eval_loss(prior, latents, text)
    assert not outcome.cache_hit and len(outcome.losses) == 60
    assert after < before * 0.9, f"LoRA should fit the static renders: {before:.4f} -> {after:.4f}"

    # Only LoRA parameters changed.
    for name, p in prior.unet.named_parameters():
        clean = name.replace(".base_layer", "")
        if "lora_" in name:
            continue
        assert torch.equal(p, base_before.get(name, base_before.get(clean))), f"base weight changed: {name}"
    trainable = [n for n, p in prior.unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)

    hit = fit_static_prior(prior, splat, tensors, cams, settings, "a blob, standing still, static", JobEvents(),
                           cache_dir=tmp_path)
    assert hit.cache_hit and hit.losses == []
    assert abs(fixed_eval_loss(prior, latents, text) - after) < 1e-6
    lora.remove_lora(prior.unet)


def test_batched_lora_steps_fit_and_key_the_cache_by_batch(tiny_prior, tmp_path):
    """lora_batch > 1: several static clips per step; still lowers the loss, and a different batch is
    a different LoRA in the cache (it is trained differently)."""
    from animus3d_shared.samples import make_test_blob
    from animus3d_worker.stages.static_prior import cache_key

    prior = tiny_prior
    splat = make_test_blob(seed=2, count=600)
    tensors = SplatTensors.from_splat(splat, "cpu")
    lo, hi = tensors.bbox
    settings = JobSettings.from_preset("test", lora_steps=20, lora_batch=3, lora_lr=3e-3, orbit_views=2,
                                       resolution=32)
    cams = make_cameras(lo, hi, resolution=32, orbit_views=2)
    static = "a blob, standing still, static"
    lora.remove_lora(prior.unet)
    lora.inject_lora(prior.unet, rank=settings.lora_rank, alpha=settings.lora_alpha)
    latents = prior.encode_frames(render_static_clips(tensors, cams, settings.frames)[:1]).detach()
    text = prior.encode_text([static])
    before = fixed_eval_loss(prior, latents, text)
    outcome = fit_static_prior(prior, splat, tensors, cams, settings, static, JobEvents(), cache_dir=tmp_path)
    assert len(outcome.losses) == 20 and not outcome.cache_hit
    assert fixed_eval_loss(prior, latents, text) < before
    assert cache_key(splat, prior.name, settings, static) != cache_key(splat, prior.name,
                                                                       settings.replace(lora_batch=1), static)
    lora.remove_lora(prior.unet)


def test_a_cached_lora_of_another_prior_under_the_same_name_is_trained_again(tiny_prior, tmp_path):
    """The cache key carries the UNet's configuration and weight shapes; a cached file that does not
    fit (damaged, or written for another architecture) is trained again rather than failing the job."""
    import copy

    from animus3d_shared.samples import make_test_blob
    from animus3d_worker.stages.static_prior import prior_fingerprint

    splat = make_test_blob(seed=4, count=300)
    tensors = SplatTensors.from_splat(splat, "cpu")
    lo, hi = tensors.bbox
    settings = JobSettings.from_preset("test", lora_steps=3, orbit_views=1, resolution=32)
    cams = make_cameras(lo, hi, resolution=32, orbit_views=1)
    static = "a blob, standing still, static"
    prior = tiny_prior
    lora.remove_lora(prior.unet)
    first = fit_static_prior(prior, splat, tensors, cams, settings, static, JobEvents(), cache_dir=tmp_path)
    assert not first.cache_hit
    assert fit_static_prior(prior, splat, tensors, cams, settings, static, JobEvents(), cache_dir=tmp_path).cache_hit
    # Another UNet (other cross-attention width) under the same name: another key, no cache hit.
    other = copy.copy(prior)
    other.unet = copy.deepcopy(prior.unet)
    lora.remove_lora(other.unet)
    other.unet.register_to_config(cross_attention_dim=int(other.unet.config.cross_attention_dim) + 1)
    assert prior_fingerprint(other) != prior_fingerprint(prior)
    # A damaged file under this prior's own key: trained again, and the job goes on.
    (cached,) = list(tmp_path.glob("*.safetensors"))
    cached.write_bytes(b"not a safetensors file")
    again = fit_static_prior(prior, splat, tensors, cams, settings, static, JobEvents(), cache_dir=tmp_path)
    assert not again.cache_hit and len(again.losses) == 3
    lora.remove_lora(prior.unet)
