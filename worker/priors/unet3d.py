"""The UNet3D family (ModelScope text-to-video-ms-1.7b, ZeroScope v2 576w / XL) from a diffusers layout.

A diffusers folder (or hub repository) holds ``model_index.json`` and the subfolders ``unet/``
(UNet3DConditionModel), ``vae/`` (AutoencoderKL), ``text_encoder/`` (CLIPTextModel), ``tokenizer/``
(CLIPTokenizer) and ``scheduler/`` (DDIM). A local folder's ``text_encoder/`` and ``tokenizer/`` may
instead hold only ``packaged.json``: the prior is conditioned on the packaged all-MiniLM-L6-v2
(``minilm``), a declared dependency rather than a copy. The tiny test prior is saved in the same layout and loads
through this very code; a trained prior whose weights are stored in 8 bits (``packing``) is first
restored to this layout in the cache.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from . import minilm
from .base import PriorLoadError, VideoPrior
from .packing import PackingError, unpacked_folder
from .tiny import cache_root

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
    """``cls.from_pretrained`` trying the fp16 weight variant first when a half dtype is wanted.

    For a local folder the fp16 variant is tried only if its files are there, and a folder holding
    safetensors is loaded with ``use_safetensors=True``: diffusers would otherwise fall back to
    pickled ``.bin`` files ("unsafe serialization") while probing.
    """
    if local:
        files = [p.name for p in (Path(source) / subfolder).glob("*")]
        if any(name.endswith(".safetensors") for name in files):
            kwargs["use_safetensors"] = True
        if not any(".fp16." in name for name in files):
            return cls.from_pretrained(source, subfolder=subfolder, local_files_only=True, **kwargs)
    if dtype in HALF_DTYPES:
        try:
            return cls.from_pretrained(source, subfolder=subfolder, variant="fp16", local_files_only=local, **kwargs)
        except (OSError, ValueError) as exc:
            log.debug("no fp16 variant for %s/%s (%s); loading the default weights", source, subfolder, exc)
    return cls.from_pretrained(source, subfolder=subfolder, local_files_only=local, **kwargs)


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` set)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _load_components(source: str, dtype: torch.dtype, local: bool, cache_only: bool = True) -> tuple:
    """(unet, vae, text_encoder, tokenizer, scheduler); hub ids read only the local cache if ``cache_only``."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    files_only = local or cache_only
    unet = _load_weights(UNet3DConditionModel, source, "unet", dtype, files_only, torch_dtype=dtype)
    vae = _load_weights(AutoencoderKL, source, "vae", dtype, files_only, torch_dtype=dtype)
    packaged = minilm.packaged_reference(Path(source) / "text_encoder") if local else None
    if packaged is not None:  # the folder refers to the packaged sentence encoder instead of copying it
        text_encoder, tokenizer = minilm.load_packaged(packaged["max_length"])
    else:
        text_encoder = _load_weights(CLIPTextModel, source, "text_encoder", dtype, files_only)
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", local_files_only=files_only)
    scheduler = DDIMScheduler.from_pretrained(source, subfolder="scheduler", local_files_only=files_only)
    return unet, vae, text_encoder, tokenizer, scheduler


def _load_error(source: str, local: bool, exc: Exception) -> PriorLoadError:
    text = str(exc).strip()
    reason = f"{type(exc).__name__}: {text.splitlines()[0] if text else 'no details'}"
    if local:
        return PriorLoadError(f"cannot load prior from folder {source}: {reason}")
    return PriorLoadError(
        f"cannot load prior {source!r} from the local Hugging Face cache or the hub ({reason}); "
        f"without hub access, download the model first (`huggingface-cli download {source} --local-dir DIR`) "
        f"and point the spec at DIR")


TRAINED_PRIOR_INFO = "animus3d_prior.json"  # written by `animus3d train-prior` beside the diffusers folders


def trained_resolution(folder: Path) -> int | None:
    """The frame size an animus3d-trained prior was trained at (its ``TRAINED_PRIOR_INFO``), else None."""
    try:
        value = json.loads((folder / TRAINED_PRIOR_INFO).read_text()).get("resolution")
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def load_unet3d_prior(source: str | Path, *, name: str | None = None, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32, local: bool | None = None) -> VideoPrior:
    """Loads a UNet3D-family prior from a local diffusers folder or a hub id (cache only if offline).

    ``local`` defaults to True when ``source`` is an existing directory. A hub id is read from the
    local hub cache first and fetched only when it is not there and ``HF_HUB_OFFLINE`` is unset.
    Any failure is raised as ``PriorLoadError`` with a one-line reason.
    """
    path = Path(source).expanduser()
    if local is None:
        local = path.is_dir()
    if local:
        check_folder(path)
        name = name or str(path.resolve())
        try:  # 8-bit packed weights (a trained prior's export) are restored once into the cache
            source = str(unpacked_folder(path.resolve(), cache_root() / "priors").resolve())
        except (PackingError, OSError) as exc:
            raise PriorLoadError(f"cannot unpack the 8-bit weights of prior folder {path}: {exc}") from None
    else:
        source = str(source)
    name = name or source
    try:
        components = _load_components(source, dtype, local)
    except Exception as exc:  # diffusers/transformers/hub raise many types; report one clear line
        if not local and not hub_offline():
            try:  # not in the local hub cache: try the hub itself (retries for a while when unreachable)
                components = _load_components(source, dtype, False, cache_only=False)
            except Exception as online_exc:
                raise _load_error(source, local, online_exc) from online_exc
        else:
            raise _load_error(source, local, exc) from exc
    prior = VideoPrior(name, *components, device=device, dtype=dtype)
    if local:
        prior.native_resolution = trained_resolution(path)
        prior.folder = path.resolve()
    log.info("loaded prior %s (%s, %s) unet=%.0fM params", name, prior.device, dtype,
             sum(p.numel() for p in prior.unet.parameters()) / 1e6)
    return prior
