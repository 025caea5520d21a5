"""Which side of the image moves in the guide clips a prior draws for `make demo`'s character?

For "the character waves its right arm" and "... left arm", draws the guide clip (the demo's CPU
settings) with a few seeds and prints how much the upper body's left and right image halves change
from the first frame. The character faces the camera: the image's left is its right arm.

    python lab/scripts/guide_sides.py [--seeds 3] [PRIOR ...]      (default: embedded)
"""

from __future__ import annotations

import argparse

import torch

from animus3d_shared.settings import DEFAULT_PRESET, JobSettings
from animus3d_worker.canonical import to_canonical
from animus3d_worker.demo import CPU_DEMO, load_sample
from animus3d_worker.pipeline import derive_static_prompt, encode_conditioning
from animus3d_worker.priors import load_prior
from animus3d_worker.render.cameras import make_cameras
from animus3d_worker.splat_tensors import SplatTensors
from animus3d_worker.stages.core import MotionProblem
from animus3d_worker.stages.guide import draw_guide_clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("priors", nargs="*", default=["embedded"])
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    settings = JobSettings.from_preset(DEFAULT_PRESET, **CPU_DEMO)
    splat, _ = to_canonical(load_sample())
    tensors = SplatTensors.from_splat(splat, torch.device("cpu"))
    lo, hi = tensors.bbox
    cameras = make_cameras(lo, hi, resolution=settings.resolution, orbit_views=settings.orbit_views,
                           elevation_deg=settings.camera_elevation_deg, device=torch.device("cpu"))
    problem = MotionProblem.build(tensors, cameras, settings)
    half, upper = settings.resolution // 2, (settings.resolution * 5) // 8
    for spec in args.priors:
        prior = load_prior(spec, device="cpu")
        for side in ("right", "left"):
            prompt = f"the character waves its {side} arm"
            cond = encode_conditioning(prior, prompt, derive_static_prompt(prompt))
            for seed in range(args.seeds):
                clip = draw_guide_clips(prior, problem, cond, settings, torch.Generator().manual_seed(seed)).kept_clip
                change = (clip - clip[:1]).abs().sum(1)[:, :upper]  # [T, upper rows, W]
                left, right = float(change[..., :half].sum()), float(change[..., half:].sum())
                print(f"{spec} | {side} arm | seed {seed} | image left (its right arm) {left:.0f} | "
                      f"image right (its left arm) {right:.0f} | moves more: {'right' if left > right else 'left'} arm",
                      flush=True)


if __name__ == "__main__":
    main()
