"""One UNet forward in which LoRA is on for some samples of the batch and off for the others.

MSD needs ε_dynamic (base model, motion prompt and empty prompt for guidance) and ε_static (LoRA
model, static prompt) at the same noisy latents. Instead of one forward per model, a per-sample
mask multiplies each LoRA branch's output (``lora_B``) by 0 or 1. This is exact because the UNet3D
keeps the batch index outermost whenever it flattens: spatial layers see ``(b f)``, temporal layers
``(b h w)`` and cross-attention context ``(b f)`` rows, so a layer's leading dimension is always a
multiple of the batch and ``mask.repeat_interleave(rows // batch)`` lines up with it.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from . import lora as lora_ops


@contextlib.contextmanager
def per_sample_lora(unet: nn.Module, mask: torch.Tensor) -> Iterator[None]:
    """Within the block, sample i of the next forward uses LoRA iff ``mask[i]`` is 1."""
    from peft.tuners.lora import LoraLayer

    batch = int(mask.shape[0])
    expanded: dict[tuple, torch.Tensor] = {}  # (rows, ndim, dtype, device) -> mask, built once per forward

    def gate(_module, _inputs, output):
        rows = output.shape[0]
        if rows % batch:
            raise RuntimeError(f"LoRA layer saw {rows} rows, not a multiple of the batch {batch}")
        key = (rows, output.dim(), output.dtype, output.device)
        m = expanded.get(key)
        if m is None:
            m = torch.repeat_interleave(mask, rows // batch).to(device=output.device, dtype=output.dtype)
            m = expanded[key] = m.reshape(rows, *([1] * (output.dim() - 1)))
        return output * m

    handles = []
    for module in unet.modules():
        if isinstance(module, LoraLayer):
            for branch in module.lora_B.values():
                handles.append(branch.register_forward_hook(gate))
    if not handles:
        raise lora_ops.LoraError("per-sample LoRA requested but no LoRA is injected")
    try:
        with lora_ops.lora_switched(unet, True):
            yield
    finally:
        for handle in handles:
            handle.remove()


def predict_noise_mixed(prior, latents: torch.Tensor, timesteps: torch.Tensor, text_embeddings: torch.Tensor,
                        lora_mask: torch.Tensor) -> torch.Tensor:
    """``prior.predict_noise`` with LoRA on exactly for the samples where ``lora_mask`` is 1."""
    with per_sample_lora(prior.unet, lora_mask):
        return prior.predict_noise(latents, timesteps, text_embeddings, lora=True)
