"""How closely a random subset of the sample splat draws the front view at 64², grown or not.

    python lab/scripts/subset_cover.py        # PSNR against the whole splat, and seconds per render

The `fit_gaussians_per_pixel` setting renders such a subset in every fit, each Gaussian grown by √(N/n).
"""

import math
import time

import torch

from animus3d_worker.demo import load_sample
from animus3d_worker.render import make_cameras, render
from animus3d_worker.splat_tensors import SplatTensors


def main() -> None:
    whole = SplatTensors.from_splat(load_sample(), "cpu")
    lo, hi = whole.bbox
    front = make_cameras(lo, hi, resolution=64, orbit_views=2, elevation_deg=10.0, device="cpu").select([0])

    def image(s: SplatTensors, shrink: float = 0.0) -> tuple[torch.Tensor, float]:
        start = time.perf_counter()
        frames = 16  # a guide fit renders the clip's 16 frames
        out, _ = render(s.means[None].expand(frames, -1, -1), s.quats[None].expand(frames, -1, -1),
                        torch.exp(s.log_scales - shrink)[None].expand(frames, -1, -1), s.opacities, s.colors, front)
        return out, time.perf_counter() - start

    full, seconds = image(whole)
    print(f"all {whole.count}: {seconds:.2f} s for 16 frames")
    for count in (12000, 8000, 6000, 4000):
        part = whole.subset(count, seed=0)
        for label, shrink in (("grown", 0.0), ("as is", 0.5 * math.log(whole.count / count))):
            out, seconds = image(part, shrink)
            psnr = -10 * math.log10(float(((out - full) ** 2).mean()))
            print(f"{count} {label}: PSNR {psnr:.1f} dB against all, {seconds:.2f} s")


if __name__ == "__main__":
    main()
