"""A tiny, randomly initialised prior with exactly ModelScope's classes and folder layout.

It exercises the real loading path and every tensor layout on CPU in milliseconds; it knows nothing
about video. ``build_tiny_prior_folder`` writes it with ``save_pretrained`` (deterministic by seed);
``tiny_prior_folder`` keeps one built copy per seed in the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .tokenizer import write_tokenizer_source

# Bump when the builder changes: cached folders with another version are rebuilt.
TINY_FORMAT = 1
MARKER = "animus3d_tiny.json"
TEXT_HIDDEN = 32
MAX_TEXT_LENGTH = 77

# ModelScope text-to-video-ms-1.7b's scheduler configuration.
MODELSCOPE_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                            beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False,
                            set_alpha_to_one=False, steps_offset=1)


def _tiny_unet():
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel(
        in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
        cross_attention_dim=TEXT_HIDDEN, attention_head_dim=4,
    )


def _tiny_vae():
    from diffusers import AutoencoderKL

    # Four blocks: three 2x downsamples, so latents are H/8 x W/8 like SD's VAE.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32), sample_size=64,
    )


def _tiny_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=TEXT_HIDDEN, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=MAX_TEXT_LENGTH,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(config)


def build_tiny_prior_folder(folder: str | Path, seed: int = 0) -> Path:
    """Writes a tiny text-to-video model in the diffusers folder layout into ``folder``.

    Same classes as ModelScope (UNet3DConditionModel, AutoencoderKL, CLIPTextModel, CLIPTokenizer,
    DDIMScheduler); weights depend only on ``seed``; the global RNG state is left untouched.
    """
    from diffusers import DDIMScheduler
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = write_tokenizer_source(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=MAX_TEXT_LENGTH)
    tokenizer.save_pretrained(str(tokenizer_dir))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _tiny_unet()
        vae = _tiny_vae()
        text_encoder = _tiny_text_encoder(tokenizer)
    unet.save_pretrained(str(folder / "unet"))
    vae.save_pretrained(str(folder / "vae"))
    text_encoder.save_pretrained(str(folder / "text_encoder"))
    DDIMScheduler(**MODELSCOPE_SCHEDULER).save_pretrained(str(folder / "scheduler"))
    import diffusers

    index = {
        "_class_name": "TextToVideoSDPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet3DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (folder / MARKER).write_text(json.dumps({"format": TINY_FORMAT, "seed": int(seed)}) + "\n")
    return folder


def cache_root() -> Path:
    """``$ANIMUS3D_CACHE`` or ``~/.cache/animus3d``."""
    return Path(os.environ.get("ANIMUS3D_CACHE") or Path.home() / ".cache" / "animus3d")


def _is_current(folder: Path, seed: int) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker == {"format": TINY_FORMAT, "seed": int(seed)}


def tiny_prior_folder(seed: int = 0, root: str | Path | None = None) -> Path:
    """The cached tiny prior folder for ``seed``, built atomically (temp dir, then rename) if absent."""
    parent = Path(root) if root is not None else cache_root() / "priors"
    final = parent / f"tiny-{int(seed)}"
    if _is_current(final, seed):
        return final
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tiny-{int(seed)}-", dir=parent))
    try:
        build_tiny_prior_folder(staging, seed)
        if final.exists():  # stale format (or a concurrent build finished first)
            if _is_current(final, seed):
                return final
            trash = Path(tempfile.mkdtemp(prefix=f".stale-tiny-{int(seed)}-", dir=parent))
            os.replace(final, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(staging, final)
        except OSError:
            if not _is_current(final, seed):  # lost a race to another builder that wrote a good copy?
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
