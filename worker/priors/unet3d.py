"""The UNet3D family (ModelScope text-to-video-ms-1.7b, ZeroScope v2 576w / XL) from a diffusers layout.

A diffusers folder (or hub repository) holds ``model_index.json`` and the subfolders ``unet/``
(UNet3DConditionModel), ``vae/`` (AutoencoderKL), ``text_encoder/`` (CLIPTextModel), ``tokenizer/``
(CLIPTokenizer) and ``scheduler/`` (DDIM). The tiny test prior is saved in the same layout and loads
through this very code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .base import PriorLoadError, VideoPrior

log = logging.getLogger("animus3d.priors")

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_folder(folder: Path) -> None:
    """Raises PriorLoadError naming what is missing from a local diffusers folder."""
    if not folder.is_dir():
        raise PriorLoadError(f"prior folder {folder} does not exist (download the model, e.g. "
                             f"`huggingface-cli download damo-vilab/text-to-video-ms-1.7b --local-dir DIR`, "
                             f"and point the spec at DIR)")
    if not (folder / "model_index.json").is_file():
        raise PriorLoadError(f"{folder} is not a diffusers model folder: model_index.json is missing")
    missing = [c for c in COMPONENTS if not (folder / c).is_dir()]
    if missing:
        raise PriorLoadError(f"prior folder {folder} lacks component folder(s): {', '.join(missing)}")


def _load_weights(cls, source: str, subfolder: str, dtype: torch.dtype, local: bool, **kwargs):
    """``cls.from_pretrained`` trying the fp16 weight variant first when a half dtype is wanted."""
    if dtype in HALF_DTYPES:
        try:
            return cls.from_pretrained(source, subfolder=subfolder, variant="fp16", local_files_only=local, **kwargs)
        except (OSError, ValueError) as exc:
            log.debug("no fp16 variant for %s/%s (%s); loading the default weights", source, subfolder, exc)
    return cls.from_pretrained(source, subfolder=subfolder, local_files_only=local, **kwargs)


def load_unet3d_prior(source: str | Path, *, name: str | None = None, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32, local: bool | None = None) -> VideoPrior:
    """Loads a UNet3D-family prior from a local diffusers folder or a hub id (cache only if offline).

    ``local`` defaults to True when ``source`` is an existing directory. Any failure is raised as
    ``PriorLoadError`` with a one-line reason.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(source).expanduser()
    if local is None:
        local = path.is_dir()
    if local:
        check_folder(path)
        source = str(path.resolve())
    else:
        source = str(source)
    name = name or source
    try:
        unet = _load_weights(UNet3DConditionModel, source, "unet", dtype, local, torch_dtype=dtype)
        vae = _load_weights(AutoencoderKL, source, "vae", dtype, local, torch_dtype=dtype)
        text_encoder = _load_weights(CLIPTextModel, source, "text_encoder", dtype, local)
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", local_files_only=local)
        scheduler = DDIMScheduler.from_pretrained(source, subfolder="scheduler", local_files_only=local)
    except PriorLoadError:
        raise
    except Exception as exc:  # diffusers/transformers/hub raise many types; report one clear line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if local:
            raise PriorLoadError(f"cannot load prior from folder {source}: {type(exc).__name__}: {reason}") from exc
        raise PriorLoadError(
            f"cannot load prior {source!r} from the Hugging Face hub or its local cache ({type(exc).__name__}: "
            f"{reason}); this machine may have no hub access: download the model first "
            f"(`huggingface-cli download {source} --local-dir DIR`) and point the spec at DIR") from exc
    prior = VideoPrior(name, unet, vae, text_encoder, tokenizer, scheduler, device=device, dtype=dtype)
    log.info("loaded prior %s (%s, %s) unet=%.0fM params", name, prior.device, dtype,
             sum(p.numel() for p in unet.parameters()) / 1e6)
    return prior
