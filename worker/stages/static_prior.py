"""Stage 1: fit a LoRA so the video prior represents "this object, not moving".

The LoRA is trained with the ordinary denoising loss on clips of the static splat (every frame the
same render) seen from the job's cameras, under the static prompt. It is cached on disk by a hash of
(splat, prior, stage settings, static prompt), so animating the same asset with a new motion prompt
skips the stage. Training uses a seed derived from that hash, not the job seed, so a cache hit and
a fresh fit give the same LoRA.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from animus3d_shared.settings import JobSettings
from animus3d_shared.splat import GaussianSplat

from ..events import JobEvents, Progress
from ..priors import cuda_graphs, lora
from ..render import Cameras, render
from ..splat_tensors import SplatTensors

log = logging.getLogger("animus3d.static_prior")

LORA_SETTINGS = ("lora_steps", "lora_batch", "lora_rank", "lora_alpha", "lora_lr", "frames", "resolution",
                 "orbit_views", "camera_elevation_deg")


@dataclass(frozen=True)
class StaticPriorOutcome:
    cache_key: str
    cache_hit: bool
    losses: list[float]  # per-step denoising loss (empty on a cache hit)


def default_cache_dir() -> Path:
    root = os.environ.get("ANIMUS3D_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "animus3d")
    return Path(root) / "lora"


def prior_fingerprint(prior) -> str:
    """What tells two priors under one name apart for the LoRA cache: the UNet's configuration and, for
    a trained prior folder, its training record (``animus3d_prior.json``: another run, other keys)."""
    config = dict(getattr(prior.unet, "config", {}) or {})
    folder = getattr(prior, "folder", None)
    record = Path(folder) / "animus3d_prior.json" if folder else None
    trained = record.read_text() if record is not None and record.is_file() else ""
    return hashlib.sha256(json.dumps([config, trained], sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_key(splat: GaussianSplat, prior_name: str, settings: JobSettings, static_prompt: str) -> str:
    digest = hashlib.sha256()
    for name, array in splat.arrays().items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    relevant = {k: getattr(settings, k) for k in LORA_SETTINGS}
    digest.update(json.dumps([prior_name, relevant, static_prompt], sort_keys=True).encode())
    return digest.hexdigest()[:32]


def render_static_clips(splat: SplatTensors, cameras: Cameras, frames: int) -> torch.Tensor:
    """Renders of the unmoving splat from every camera, as clips [C, F, 3, H, W] in [0, 1]."""
    with torch.no_grad():
        images, _ = render(splat.means, splat.quats, splat.scales, splat.opacities, splat.colors, cameras)
    views = images[0].permute(0, 3, 1, 2)  # [C, 3, H, W]
    return views.unsqueeze(1).expand(-1, frames, -1, -1, -1).contiguous()


def _fresh_lora(unet, settings: JobSettings) -> list:
    """Untrained LoRA layers on ``unet`` (any it had are removed first); their parameters."""
    lora.remove_lora(unet)
    return lora.inject_lora(unet, rank=settings.lora_rank, alpha=settings.lora_alpha)


def fit_static_prior(
    prior,
    splat: GaussianSplat,
    tensors: SplatTensors,
    cameras: Cameras,
    settings: JobSettings,
    static_prompt: str,
    events: JobEvents,
    cache_dir: Path | None = None,
) -> StaticPriorOutcome:
    """Injects a LoRA into ``prior.unet`` and trains it (or loads it from the cache)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(splat, f"{prior.name}#{prior_fingerprint(prior)}", settings, static_prompt)
    path = cache_dir / f"{key}.safetensors"

    params = _fresh_lora(prior.unet, settings)
    if path.exists():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            lora.load_lora_state_dict(prior.unet, load_file(str(path), device=str(prior.device)))
        except (SafetensorError, lora.LoraError, RuntimeError, OSError, ValueError) as exc:  # damaged, or another prior's
            log.warning("cached LoRA %s does not fit this prior (%s); training it again", path.name, exc)
            params = _fresh_lora(prior.unet, settings)
        else:
            log.info("static prior cache hit key=%s", key)
            events.progress(Progress("static_prior", settings.lora_steps, settings.lora_steps, message="cached LoRA"))
            return StaticPriorOutcome(key, True, [])

    generator = torch.Generator(device="cpu").manual_seed(int(key[:8], 16))
    clips = render_static_clips(tensors, cameras, settings.frames)
    with torch.no_grad():
        latents = torch.cat([prior.encode_frames(clip[None].to(prior.dtype)) for clip in clips])
    text = prior.encode_text([static_prompt])
    optimiser = torch.optim.AdamW(params, lr=settings.lora_lr, weight_decay=0.0)
    step_losses: list[torch.Tensor] = []  # kept on the device; read back only when reporting
    log_every = max(1, settings.lora_steps // 100)
    prior.unet.train(False)  # dropout off; LoRA params still get gradients
    graphed = None
    for step in range(settings.lora_steps):
        events.check_cancelled()
        views = torch.randint(0, latents.shape[0], (settings.lora_batch,), generator=generator).tolist()
        x0 = torch.cat([latents[v : v + 1] for v in views])  # slices: no index copied to the device
        noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        t = torch.randint(0, prior.num_train_timesteps, (settings.lora_batch,), generator=generator).to(prior.device)
        noisy = prior.add_noise(x0, noise, t)
        texts = text.expand(settings.lora_batch, -1, -1)
        if step == 0 and settings.cuda_graphs and prior.device.type == "cuda":
            # The step's shapes never change: replay the UNet's forward and backward from CUDA graphs
            # (a LoRA step is otherwise bound by the CPU launching peft's small kernels).
            graphed = cuda_graphs.graphed_training_forward(prior.unet, noisy.to(prior.dtype), t, texts.to(prior.dtype))
        with torch.enable_grad():
            if graphed is not None:
                eps = graphed(noisy.to(prior.dtype), t, texts.to(prior.dtype))
            else:
                eps = prior.predict_noise(noisy, t, texts, lora=True)
            loss = torch.nn.functional.mse_loss(eps.float(), noise.float())
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
        optimiser.step()
        step_losses.append(loss.detach())
        if step % log_every == 0 or step == settings.lora_steps - 1:
            events.progress(Progress("static_prior", step + 1, settings.lora_steps,
                                     losses={"lora": float(step_losses[-1])}))
    losses = torch.stack(step_losses).float().cpu().tolist() if step_losses else []

    cache_dir.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in lora.lora_state_dict(prior.unet).items()}, str(tmp))
    os.replace(tmp, path)
    log.info("static prior trained key=%s steps=%d final_loss=%.4f", key, settings.lora_steps,
             losses[-1] if losses else float("nan"))
    return StaticPriorOutcome(key, False, losses)
