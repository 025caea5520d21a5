"""8-bit weight storage: a packed diffusers folder loads through the normal prior loader, close to the original."""

import shutil

import pytest
import torch

from animus3d_worker.priors import PriorLoadError, build_tiny_prior_folder, load_prior
from animus3d_worker.priors.packing import (PACKED_FILE, PackingError, dequantize_rows, pack_component,
                                            packed_components, quantize_rows, unpacked_folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(plain tiny prior folder, the same with every packable component stored in 8 bits)."""
    root = tmp_path_factory.mktemp("packing")
    plain = build_tiny_prior_folder(root / "plain", seed=5)
    packed = root / "packed"
    shutil.copytree(plain, packed)
    for component in ("unet", "vae", "text_encoder"):
        pack_component(packed / component)
    return plain, packed


def test_row_quantisation_error_is_at_most_half_a_step():
    weight = torch.randn(16, 8, 3, 3) * torch.logspace(-3, 1, 16)[:, None, None, None]  # rows of very different size
    q, scale = quantize_rows(weight)
    assert q.dtype == torch.int8 and q.shape == weight.shape and scale.shape == (16,)
    error = (dequantize_rows(q, scale, torch.float32) - weight).abs().reshape(16, -1).amax(1)
    assert torch.all(error <= scale / 2 + 1e-7)


def test_packed_folder_is_smaller_and_holds_no_plain_weights(folders):
    plain, packed = folders
    assert packed_components(packed) == ["unet", "vae", "text_encoder"] and packed_components(plain) == []
    assert not list((packed / "unet").glob("diffusion_pytorch_model*.safetensors"))
    size = {f: sum(p.stat().st_size for p in (f / "unet").iterdir()) for f in folders}
    assert size[packed] < 0.7 * size[plain]


def test_packed_folder_loads_like_the_original(folders):
    plain, packed = folders
    a, b = load_prior(str(plain)), load_prior(str(packed))
    assert b.name == str(packed.resolve())  # named after the folder asked for, not the cache copy
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 4, 8, 8, generator=generator)
    text_a, text_b = a.encode_text(["a robot waves"]), b.encode_text(["a robot waves"])
    assert torch.allclose(text_a, text_b, rtol=0.05, atol=0.05)
    eps_a = a.predict_noise(latents, 500, text_a)
    eps_b = b.predict_noise(latents, 500, text_b)
    relative = float((eps_a - eps_b).norm() / eps_a.norm())
    assert 0 < relative < 0.05  # changed by rounding, not broken


def test_unpacking_happens_once_per_content(folders, tmp_path):
    _, packed = folders
    first = unpacked_folder(packed, tmp_path)
    stamp = (first / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert unpacked_folder(packed, tmp_path) == first
    assert (first / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
    assert not list((first / "unet").glob(PACKED_FILE))
    edited = tmp_path / "edited"
    shutil.copytree(packed, edited)
    (edited / "scheduler" / "scheduler_config.json").write_text(
        (edited / "scheduler" / "scheduler_config.json").read_text().replace("0.012", "0.0121"))
    assert unpacked_folder(edited, tmp_path) != first  # another config: another copy, never a stale one


def test_damaged_packed_weights_are_a_clear_load_error(folders, tmp_path):
    _, packed = folders
    broken = tmp_path / "broken"
    shutil.copytree(packed, broken)
    data = (broken / "unet" / PACKED_FILE).read_bytes()
    (broken / "unet" / PACKED_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(PriorLoadError, match="8-bit weights"):
        load_prior(str(broken))


def test_packing_needs_exactly_one_weights_file(folders, tmp_path):
    plain, _ = folders
    twice = tmp_path / "unet"
    shutil.copytree(plain / "unet", twice)
    shutil.copy(twice / "diffusion_pytorch_model.safetensors", twice / "other.safetensors")
    with pytest.raises(PackingError, match="exactly one"):
        pack_component(twice)
