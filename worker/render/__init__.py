"""Differentiable Gaussian-splat rendering: gsplat on CUDA, our own pure-PyTorch splatter on the CPU.

```python
cams = make_cameras(bbox_min, bbox_max, resolution=256, orbit_views=8, elevation_deg=10.0, device=dev)
images, alphas = render(means, quats, scales, opacities, colors, cams, background=(1., 1., 1.))
# images [B,C,H,W,3] composited over the background, alphas [B,C,H,W,1]
```
"""

from __future__ import annotations

from typing import Sequence

import torch

from .cameras import CameraError, Cameras, make_cameras
from .gsplat_backend import gsplat_available, rasterize_gsplat
from .torch_splat import rasterize_torch

__all__ = ["CameraError", "Cameras", "RenderError", "make_cameras", "render", "resolve_backend"]

BACKENDS = ("auto", "torch", "gsplat")
NEAR_PLANE = 0.01
EPS2D = 0.3


class RenderError(ValueError):
    """Bad render inputs (shapes, devices, dtypes, background) or an unusable backend."""


def resolve_backend(backend: str, device: torch.device) -> str:
    """"torch" or "gsplat" for a requested backend and the device the Gaussians live on."""
    if backend not in BACKENDS:
        raise RenderError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "gsplat" if device.type == "cuda" and gsplat_available() else "torch"
    if backend == "gsplat":
        if device.type != "cuda":
            raise RenderError(f"the gsplat backend needs CUDA tensors, got tensors on {device}")
        if not gsplat_available():
            raise RenderError("the gsplat backend was requested but gsplat does not import")
    return backend


def _batched(name: str, tensor: torch.Tensor, tail: tuple[int, ...]) -> torch.Tensor:
    """``tensor`` as [B', N, *tail] (B' = 1 when it came unbatched), or a RenderError."""
    if not isinstance(tensor, torch.Tensor):
        raise RenderError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise RenderError(f"{name} must be floating point, got {tensor.dtype}")
    if tensor.ndim == 1 + len(tail) and tuple(tensor.shape[1:]) == tail:
        return tensor.unsqueeze(0)
    if tensor.ndim == 2 + len(tail) and tuple(tensor.shape[2:]) == tail:
        return tensor
    shape = ",".join(["N", *map(str, tail)])
    raise RenderError(f"{name} must be [{shape}] or [B,{shape}], got {tuple(tensor.shape)}")


def _background(background, channels: int, like: torch.Tensor) -> torch.Tensor:
    bg = torch.as_tensor(background, dtype=like.dtype, device=like.device).reshape(-1)
    if bg.numel() != channels:
        raise RenderError(f"background must have {channels} values, got {bg.numel()}")
    return bg


def render(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    cams: Cameras,
    background: Sequence[float] | torch.Tensor = (1.0, 1.0, 1.0),
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Renders B sets of N Gaussians from every camera in ``cams``; differentiable w.r.t. all Gaussian inputs.

    means [B,N,3]; quats [B,N,4] (w,x,y,z, need not be normalised); scales [B,N,3] (activated);
    opacities [B,N] or [N] (activated); colors [B,N,3] or [N,3] in [0,1]. Any input may come
    unbatched ([N,...]); a batch of 1 broadcasts against the others.
    Returns images [B,C,H,W,3] composited over ``background`` and alphas [B,C,H,W,1].
    backend: "auto" (gsplat for CUDA tensors when it imports, else "torch"), "torch" or "gsplat".
    """
    if not isinstance(cams, Cameras):
        raise RenderError(f"cams must be a Cameras, got {type(cams).__name__}")
    parts = {
        "means": _batched("means", means, (3,)),
        "quats": _batched("quats", quats, (4,)),
        "scales": _batched("scales", scales, (3,)),
        "opacities": _batched("opacities", opacities, ()),
        "colors": _batched("colors", colors, (3,)),
    }
    counts = {name: t.shape[1] for name, t in parts.items()}
    if len(set(counts.values())) != 1:
        raise RenderError(f"inputs disagree on the number of Gaussians: {counts}")
    batches = {t.shape[0] for t in parts.values()} - {1}
    if len(batches) > 1:
        raise RenderError(f"inputs disagree on the batch size: { {n: t.shape[0] for n, t in parts.items()} }")
    B = batches.pop() if batches else 1
    device, dtype = parts["means"].device, parts["means"].dtype
    for name, t in parts.items():
        if t.device != device or t.dtype != dtype:
            raise RenderError(f"{name} is {t.dtype} on {t.device}, means is {dtype} on {device}")
    parts = {name: t.expand((B,) + t.shape[1:]) for name, t in parts.items()}
    bg = _background(background, 3, parts["means"])
    viewmats = cams.viewmats.to(device=device, dtype=dtype)
    Ks = cams.Ks.to(device=device, dtype=dtype)

    args = (parts["means"], parts["quats"], parts["scales"], parts["opacities"], parts["colors"], viewmats, Ks,
            cams.width, cams.height, bg)
    if resolve_backend(backend, device) == "gsplat":
        return rasterize_gsplat(*args, near_plane=NEAR_PLANE, eps2d=EPS2D)
    return rasterize_torch(*args, near_plane=NEAR_PLANE, eps2d=EPS2D)
