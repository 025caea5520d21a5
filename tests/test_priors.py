"""The prior layer loads real diffusers classes from a folder and honours the tensor layouts."""

import json

import pytest
import torch

from animus3d_worker.priors import PriorLoadError, VideoPrior, build_tiny_prior_folder, load_prior
from animus3d_worker.priors import loading
from animus3d_worker.priors.tiny import tiny_prior_folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_tiny_prior_folder(tmp_path_factory.mktemp("tiny") / "model", seed=3)


def test_folder_has_diffusers_layout(tiny_folder):
    index = json.loads((tiny_folder / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet3DConditionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    for component in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_folder / component).is_dir()


def test_loads_real_classes_from_folder(tiny_folder):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    prior = load_prior(str(tiny_folder))
    assert isinstance(prior, VideoPrior)
    assert isinstance(prior.unet, UNet3DConditionModel)
    assert isinstance(prior.vae, AutoencoderKL)
    assert isinstance(prior.text_encoder, CLIPTextModel)
    assert isinstance(prior.tokenizer, CLIPTokenizer)
    assert isinstance(prior.scheduler, DDIMScheduler)
    assert prior.name == str(tiny_folder.resolve())
    assert prior.latent_channels == 4 and prior.spatial_downsample == 8
    assert prior.num_train_timesteps == 1000
    assert not prior.unet.training and not prior.vae.training and not prior.text_encoder.training
    for module in (prior.unet, prior.vae, prior.text_encoder):
        assert not any(p.requires_grad for p in module.parameters())


def test_scheduler_is_modelscopes(tiny_prior):
    config = tiny_prior.scheduler.config
    assert (config.beta_schedule, config.prediction_type, config.clip_sample) == ("scaled_linear", "epsilon", False)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    expected = torch.cumprod(1.0 - betas, 0).float()
    ab = tiny_prior.alphas_cumprod
    assert ab.dtype == torch.float32 and ab.shape == (1000,)
    torch.testing.assert_close(ab, expected, rtol=1e-5, atol=1e-6)


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    from diffusers import UNet3DConditionModel

    a = build_tiny_prior_folder(tmp_path / "a", seed=7)
    b = build_tiny_prior_folder(tmp_path / "b", seed=7)
    c = build_tiny_prior_folder(tmp_path / "c", seed=8)
    ua, ub, uc = (UNet3DConditionModel.from_pretrained(str(f), subfolder="unet") for f in (a, b, c))
    sa, sb, sc = ua.state_dict(), ub.state_dict(), uc.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_building_does_not_touch_global_rng(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_prior_folder(tmp_path / "m", seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_spec_uses_cache_folder(tmp_path):
    first = tiny_prior_folder(5, root=tmp_path)
    stamp = (first / "unet" / "config.json").stat().st_mtime_ns
    again = tiny_prior_folder(5, root=tmp_path)
    assert again == first == tmp_path / "tiny-5"
    assert (first / "unet" / "config.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-5"]  # no staging leftovers


def test_tiny_seed_spec_names_prior():
    prior = load_prior("tiny:2")
    assert prior.name == "tiny:2"
    with pytest.raises(PriorLoadError, match="tiny:<integer seed>"):
        load_prior("tiny:abc")


def test_embedded_falls_back_to_tiny_with_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(loading, "EMBEDDED_FOLDER", tmp_path / "absent")
    with caplog.at_level("WARNING", logger="animus3d.priors"):
        prior = load_prior("embedded")
    assert prior.name == "tiny:0"
    assert "no embedded prior" in caplog.text


def test_text_embeddings_shape_and_cache(tiny_prior):
    emb = tiny_prior.encode_text(["a dog running", "", "a dog running"])
    assert emb.shape == (3, 77, tiny_prior.text_encoder.config.hidden_size)
    assert torch.equal(emb[0], emb[2]) and not torch.equal(emb[0], emb[1])
    assert not emb.requires_grad
    assert torch.equal(tiny_prior.encode_text(["a dog running"])[0], emb[0])
    with pytest.raises(TypeError):
        tiny_prior.encode_text("a dog running")


def test_encode_frames_shape_and_gradient(tiny_prior):
    frames = torch.rand(2, 3, 3, 32, 48, requires_grad=True)
    latents = tiny_prior.encode_frames(frames)
    assert latents.shape == (2, 4, 3, 4, 6)
    latents.square().sum().backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0
    # Deterministic (posterior mean), and each frame is encoded independently of the others.
    with torch.no_grad():
        again = tiny_prior.encode_frames(frames)
        single = tiny_prior.encode_frames(frames[1:, 2:])
    torch.testing.assert_close(again, latents.detach())
    torch.testing.assert_close(single[:, :, 0], latents.detach()[1:, :, 2], rtol=1e-4, atol=1e-5)


def test_encode_frames_rejects_bad_layout(tiny_prior):
    with pytest.raises(ValueError, match=r"\[B, F, 3, H, W\]"):
        tiny_prior.encode_frames(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="multiple of 8"):
        tiny_prior.encode_frames(torch.rand(1, 2, 3, 30, 32))


def test_decode_latents_shape_and_range(tiny_prior):
    with torch.no_grad():
        frames = tiny_prior.decode_latents(torch.randn(2, 4, 3, 4, 5))
    assert frames.shape == (2, 3, 3, 32, 40)
    assert frames.min() >= 0.0 and frames.max() <= 1.0


def test_predict_noise_batched_and_per_sample_timesteps(tiny_prior):
    text = tiny_prior.encode_text(["a cat", "a dog"])
    latents = torch.randn(2, 4, 4, 4, 4)
    with torch.no_grad():
        both = tiny_prior.predict_noise(latents, torch.tensor([100, 800]), text)
        first = tiny_prior.predict_noise(latents[:1], 100, text[:1])
        second = tiny_prior.predict_noise(latents[1:], torch.tensor([800]), text[1:])
    assert both.shape == latents.shape and both.dtype == latents.dtype
    torch.testing.assert_close(both, torch.cat([first, second]), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(first, tiny_prior.predict_noise(latents[:1], 800, text[:1]))
    with pytest.raises(ValueError, match="timesteps"):
        tiny_prior.predict_noise(latents, torch.tensor([1, 2, 3]), text)


def test_predict_noise_lora_without_injection_is_an_error(tiny_prior):
    from animus3d_worker.priors.lora import LoraError

    text = tiny_prior.encode_text(["a cat"])
    with pytest.raises(LoraError, match="inject_lora"):
        tiny_prior.predict_noise(torch.randn(1, 4, 2, 4, 4), 10, text, lora=True)


def test_add_noise_is_forward_process(tiny_prior):
    x0, noise = torch.randn(2, 4, 2, 4, 4), torch.randn(2, 4, 2, 4, 4)
    t = torch.tensor([0, 999])
    noisy = tiny_prior.add_noise(x0, noise, t)
    ab = tiny_prior.alphas_cumprod
    for i in range(2):
        torch.testing.assert_close(noisy[i], ab[t[i]].sqrt() * x0[i] + (1 - ab[t[i]]).sqrt() * noise[i])


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(PriorLoadError, match="does not exist.*download"):
        load_prior(str(tmp_path / "nowhere"))


def test_folder_without_component_is_a_clear_error(tiny_folder, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(PriorLoadError, match="lacks component folder.*vae"):
        load_prior(str(broken))
    (broken / "model_index.json").unlink()
    with pytest.raises(PriorLoadError, match="model_index.json is missing"):
        load_prior(str(broken))


def test_hub_id_offline_and_uncached_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PriorLoadError, match="download the model first"):
        load_prior("nobody-here/no-such-video-model-xyz")


def test_bad_spec_is_a_clear_error():
    with pytest.raises(PriorLoadError, match="unknown prior spec"):
        load_prior("not a spec at all")
    with pytest.raises(PriorLoadError, match="non-empty"):
        load_prior("")


def test_half_dtype_prefers_fp16_variant_files(tiny_folder, tmp_path):
    import shutil

    from diffusers import UNet3DConditionModel

    folder = tmp_path / "variant"
    shutil.copytree(tiny_folder, folder)
    unet = UNet3DConditionModel.from_pretrained(str(folder), subfolder="unet")
    with torch.no_grad():
        unet.conv_in.bias.fill_(0.5)  # marks the variant's weights
    shutil.rmtree(folder / "unet")
    unet.to(torch.float16).save_pretrained(str(folder / "unet"), variant="fp16")
    prior = load_prior(str(folder), dtype=torch.bfloat16)
    assert prior.unet.dtype == torch.bfloat16 and prior.text_encoder.dtype == torch.bfloat16
    assert torch.all(prior.unet.conv_in.bias == 0.5)
    # Without the default weights a float32 load cannot succeed, and says why in one line.
    with pytest.raises(PriorLoadError, match="cannot load prior from folder"):
        load_prior(str(folder), dtype=torch.float32)
    # A folder without fp16 variant files still loads in half precision (falls back to the default files).
    assert load_prior(str(tiny_folder), dtype=torch.bfloat16).unet.dtype == torch.bfloat16


def test_the_embedded_prior_declares_its_training_resolution():
    from animus3d_worker.priors.loading import EMBEDDED_FOLDER

    if not (EMBEDDED_FOLDER / "animus3d_prior.json").is_file():
        pytest.skip("no embedded prior in this checkout")
    assert load_prior("embedded").native_resolution == 64
    assert load_prior("tiny").native_resolution is None  # a plain diffusers folder declares nothing


def test_jobs_render_no_larger_than_a_prior_trained_smaller():
    from animus3d_shared.settings import JobSettings
    from animus3d_worker.events import JobEvents
    from animus3d_worker.pipeline import fit_resolution_to_prior

    prior = load_prior("tiny")
    messages = []
    events = JobEvents(on_progress=lambda p: messages.append(p.message))
    standard = JobSettings.from_preset("standard")
    assert fit_resolution_to_prior(standard, prior, events) is standard  # nothing declared: unchanged
    prior.native_resolution = 64
    fitted = fit_resolution_to_prior(standard, prior, events)
    assert fitted.resolution == 64 and fitted.msd_steps == standard.msd_steps
    assert any("64×64" in (m or "") for m in messages)
    small = standard.replace(resolution=32)
    assert fit_resolution_to_prior(small, prior, events) is small  # smaller than native: the user's choice
