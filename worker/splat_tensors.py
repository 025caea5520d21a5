"""A GaussianSplat as torch tensors on one device, activated the way the renderer wants them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from animus3d_shared.splat import GaussianSplat


@dataclass(frozen=True)
class SplatTensors:
    means: torch.Tensor  # [N, 3]
    quats: torch.Tensor  # [N, 4] wxyz, normalised
    log_scales: torch.Tensor  # [N, 3]
    opacities: torch.Tensor  # [N] in (0, 1)
    colors: torch.Tensor  # [N, 3] in [0, 1] (SH DC; view-independent)

    @classmethod
    def from_splat(cls, splat: GaussianSplat, device: torch.device | str) -> "SplatTensors":
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.array(a, dtype=np.float32, copy=True)).to(device)

        quats = t(splat.quats)
        quats = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return cls(
            means=t(splat.means),
            quats=quats,
            log_scales=t(splat.log_scales),
            opacities=torch.sigmoid(t(splat.opacity_logits)),
            colors=t(splat.colors),
        )

    def subset(self, count: int, seed: int = 0) -> "SplatTensors":
        """``count`` of the Gaussians drawn at random (seeded, in their original order), each grown by
        √(N/count) on every axis so that the fewer, larger splats cover the image about as the whole
        splat does (a surface's cover goes with count × footprint area). The whole splat when it has
        no more than ``count``."""
        if count <= 0 or count >= self.count:
            return self
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(self.count, generator=generator)[:count].sort().values.to(self.means.device)
        grow = 0.5 * float(np.log(self.count / count))
        return SplatTensors(self.means[index], self.quats[index], self.log_scales[index] + grow,
                            self.opacities[index], self.colors[index])

    @property
    def count(self) -> int:
        return int(self.means.shape[0])

    @property
    def scales(self) -> torch.Tensor:
        return torch.exp(self.log_scales)

    @property
    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        lo = self.means.min(dim=0).values.detach().cpu().numpy()
        hi = self.means.max(dim=0).values.detach().cpu().numpy()
        return lo, hi
