"""``load_prior(spec)``: turns a prior spec into a loaded VideoPrior.

Specs:
- ``"tiny"`` / ``"tiny:<seed>"``: the tiny random prior, built once into the cache, then loaded from
  its folder by the same code as a real checkpoint;
- ``"embedded"``: the trained prior shipped in ``animus3d_worker/assets/prior/`` (falls back to
  ``"tiny"`` with a warning while it does not exist);
- a local diffusers folder (absolute, ``~``, ``./`` or any existing directory);
- a Hugging Face id such as ``"damo-vilab/text-to-video-ms-1.7b"`` or ``"cerspense/zeroscope_v2_576w"``
  (read from the local hub cache when there is no network).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from .base import PriorLoadError, VideoPrior
from .tiny import tiny_prior_folder
from .unet3d import load_unet3d_prior

log = logging.getLogger("animus3d.priors")

EMBEDDED_FOLDER = Path(__file__).resolve().parent.parent / "assets" / "prior"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _tiny_seed(spec: str) -> int:
    if spec == "tiny":
        return 0
    text = spec.split(":", 1)[1]
    try:
        return int(text)
    except ValueError:
        raise PriorLoadError(f"bad tiny prior spec {spec!r}: expected 'tiny' or 'tiny:<integer seed>'") from None


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "~", "./", "../", "\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", spec))


def load_prior(spec: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> VideoPrior:
    """Loads the prior named by ``spec`` onto ``device`` in ``dtype`` (frozen, eval mode).

    Raises PriorLoadError with a one-line reason when it cannot.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PriorLoadError(f"prior spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec == "tiny" or spec.startswith("tiny:"):
        seed = _tiny_seed(spec)
        return load_unet3d_prior(tiny_prior_folder(seed), name=f"tiny:{seed}", device=device, dtype=dtype, local=True)
    if spec == "embedded":
        if (EMBEDDED_FOLDER / "model_index.json").is_file():
            return load_unet3d_prior(EMBEDDED_FOLDER, name="embedded", device=device, dtype=dtype, local=True)
        log.warning("no embedded prior at %s yet; using the tiny random prior instead", EMBEDDED_FOLDER)
        return load_prior("tiny", device=device, dtype=dtype)
    path = Path(spec).expanduser()
    if path.is_dir() or _looks_like_path(spec):
        return load_unet3d_prior(path, name=str(path.resolve()), device=device, dtype=dtype, local=True)
    if _HUB_ID.match(spec):
        return load_unet3d_prior(spec, name=spec, device=device, dtype=dtype, local=False)
    raise PriorLoadError(f"unknown prior spec {spec!r}: use 'tiny', 'embedded', a diffusers folder path "
                         f"or a Hugging Face id like 'damo-vilab/text-to-video-ms-1.7b'")
