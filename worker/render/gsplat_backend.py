"""Thin wrapper around ``gsplat.rasterization`` (CUDA only), imported lazily.

gsplat takes leading batch dimensions on every input, so the B deformed copies of a splat are
rendered from the C cameras in one call: means [B,N,3], viewmats [B,C,4,4]. The background is
composited here (colour + (1 − α)·background) rather than by gsplat: gsplat 1.5.3's packed path
checks ``backgrounds`` against the packed (not the image) dimensions and rejects every batched shape
(seen on an H100).
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=1)
def gsplat_available() -> bool:
    """True when ``gsplat`` imports (it still needs CUDA tensors to run)."""
    try:
        import gsplat  # noqa: F401
    except Exception:  # gsplat may fail at import time for reasons other than ImportError
        return False
    return True


def rasterize_gsplat(
    means: torch.Tensor,  # [B,N,3]
    quats: torch.Tensor,  # [B,N,4] wxyz
    scales: torch.Tensor,  # [B,N,3] activated
    opacities: torch.Tensor,  # [B,N] activated
    colors: torch.Tensor,  # [B,N,D]
    viewmats: torch.Tensor,  # [C,4,4]
    Ks: torch.Tensor,  # [C,3,3]
    width: int,
    height: int,
    background: torch.Tensor,  # [D]
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    packed: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``torch_splat.rasterize_torch``: images [B,C,H,W,D] over background, alphas [B,C,H,W,1]."""
    from gsplat import rasterization

    B = means.shape[0]
    C = viewmats.shape[0]
    D = colors.shape[-1]
    images, alphas, _meta = rasterization(
        means.contiguous(),
        quats.contiguous(),
        scales.contiguous(),
        opacities.contiguous(),
        colors.contiguous(),
        viewmats.expand(B, C, 4, 4).contiguous(),
        Ks.expand(B, C, 3, 3).contiguous(),
        int(width),
        int(height),
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
        packed=packed,
        render_mode="RGB",
        rasterize_mode="classic",
    )
    images = images + (1.0 - alphas) * background.to(images.dtype).reshape(*([1] * (images.dim() - 1)), D)
    return images, alphas
