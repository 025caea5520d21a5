"""LoRA injection, toggling, state-dict round trip and removal on the tiny UNet3D."""

import pytest
import torch

from animus3d_worker.priors import load_prior, lora
from animus3d_worker.priors.lora import LoraError


@pytest.fixture(scope="module")
def prior():
    # Its own prior object: these tests mutate the UNet (the session's tiny_prior stays clean).
    return load_prior("tiny")


@pytest.fixture
def injected(prior):
    params = lora.inject_lora(prior.unet, rank=4, alpha=4.0)
    yield prior, params
    lora.remove_lora(prior.unet)


@pytest.fixture(scope="module")
def inputs(prior):
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 4, 3, 4, 4, generator=g), torch.tensor([250, 700]), prior.encode_text(["a dog", "a cat"])


def _perturb_lora_b(model, std=0.05, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in lora.lora_parameters(model).items():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)


def test_targets_spatial_and_temporal_attention_only(injected):
    prior, params = injected
    names = list(lora.lora_parameters(prior.unet))
    assert len(params) == len(names) > 0
    projections = {n.split(".lora_")[0] for n in names}
    assert all(p.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") or p.endswith("to_out.0") for p in projections)
    assert any(".attentions." in p for p in projections)  # spatial
    assert any(".temp_attentions." in p for p in projections)  # temporal
    assert any(p.startswith("transformer_in.") for p in projections)  # input temporal attention
    assert any(".attn2." in p for p in projections)  # cross-attention too


def test_only_lora_params_are_trainable(injected):
    prior, params = injected
    trainable = [p for p in prior.unet.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in params}
    assert not any(p.requires_grad for p in prior.vae.parameters())
    assert not any(p.requires_grad for p in prior.text_encoder.parameters())


def test_zero_init_then_perturbed_changes_prediction(injected, inputs):
    prior, _ = injected
    x, t, text = inputs
    with torch.no_grad():
        off = prior.predict_noise(x, t, text, lora=False)
        on = prior.predict_noise(x, t, text, lora=True)
        torch.testing.assert_close(on, off, rtol=0, atol=0)  # B starts at zero
        _perturb_lora_b(prior.unet)
        on_after = prior.predict_noise(x, t, text, lora=True)
        off_after = prior.predict_noise(x, t, text, lora=False)
    assert (on_after - off).abs().max() > 1e-3
    torch.testing.assert_close(off_after, off, rtol=0, atol=0)


def test_lora_flag_is_for_one_call_and_gradients_reach_lora(injected, inputs):
    prior, params = injected
    x, t, text = inputs
    lora.set_lora_enabled(prior.unet, False)
    eps = prior.predict_noise(x, t, text, lora=True)
    assert not lora.lora_enabled(prior.unet)  # restored after the call
    eps.square().mean().backward()
    assert all(p.grad is not None for p in params)
    assert any(p.grad.abs().sum() > 0 for p in params)
    assert all(p.requires_grad for p in params)


def test_set_lora_enabled_toggles_without_changing_trainability(injected, inputs):
    prior, params = injected
    x, t, text = inputs
    _perturb_lora_b(prior.unet)
    with torch.no_grad():
        lora.set_lora_enabled(prior.unet, True)
        on = prior.unet(x, t, encoder_hidden_states=text).sample
        lora.set_lora_enabled(prior.unet, False)
        assert not lora.lora_enabled(prior.unet)
        off = prior.unet(x, t, encoder_hidden_states=text).sample
        lora.set_lora_enabled(prior.unet, True)
        assert lora.lora_enabled(prior.unet)
        on_again = prior.unet(x, t, encoder_hidden_states=text).sample
    assert not torch.allclose(on, off)
    torch.testing.assert_close(on_again, on, rtol=0, atol=0)
    assert all(p.requires_grad for p in params)


def test_state_dict_round_trip(injected, inputs):
    prior, _ = injected
    x, t, text = inputs
    _perturb_lora_b(prior.unet, seed=3)
    saved = lora.lora_state_dict(prior.unet)
    with torch.no_grad():
        expected = prior.predict_noise(x, t, text, lora=True)
    assert all(".lora_" in k for k in saved) and not any(v.requires_grad for v in saved.values())
    _perturb_lora_b(prior.unet, seed=4)
    lora.load_lora_state_dict(prior.unet, saved)
    with torch.no_grad():
        torch.testing.assert_close(prior.predict_noise(x, t, text, lora=True), expected, rtol=0, atol=0)
    bad = dict(saved)
    bad.pop(next(iter(bad)))
    with pytest.raises(LoraError, match="missing"):
        lora.load_lora_state_dict(prior.unet, bad)


def test_state_dict_loads_after_remove_and_reinject(prior, inputs):
    x, t, text = inputs
    with torch.no_grad():
        base = prior.predict_noise(x, t, text)
    lora.inject_lora(prior.unet, rank=4, alpha=4.0)
    _perturb_lora_b(prior.unet, seed=5)
    saved = lora.lora_state_dict(prior.unet)
    with torch.no_grad():
        expected = prior.predict_noise(x, t, text, lora=True)
    lora.remove_lora(prior.unet)
    assert not lora.has_lora(prior.unet)
    assert not any(p.requires_grad for p in prior.unet.parameters())
    with torch.no_grad():
        torch.testing.assert_close(prior.predict_noise(x, t, text), base, rtol=0, atol=0)
    lora.inject_lora(prior.unet, rank=4, alpha=4.0)
    try:
        lora.load_lora_state_dict(prior.unet, saved)
        with torch.no_grad():
            torch.testing.assert_close(prior.predict_noise(x, t, text, lora=True), expected, rtol=0, atol=0)
    finally:
        lora.remove_lora(prior.unet)


def test_reinject_with_other_rank_and_target(prior):
    lora.remove_lora(prior.unet)  # no-op without LoRA
    try:
        lora.inject_lora(prior.unet, rank=2, alpha=2.0, target="temporal")
        names = list(lora.lora_parameters(prior.unet))
        assert names and not any(".attentions." in n for n in names)
        assert all(p.shape[0] == 2 for n, p in lora.lora_parameters(prior.unet).items() if ".lora_A." in n)
        with pytest.raises(LoraError, match="remove_lora"):
            lora.inject_lora(prior.unet, rank=2)
        with pytest.raises(LoraError, match="inject_lora"):
            lora.remove_lora(prior.unet)
            lora.load_lora_state_dict(prior.unet, {})
    finally:
        lora.remove_lora(prior.unet)
    with pytest.raises(LoraError, match="unknown LoRA target"):
        lora.inject_lora(prior.unet, target="everything")
