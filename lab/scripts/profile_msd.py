"""Profile a few MSD steps at full size on CUDA: where does a step's time go (CPU vs GPU)?"""

import sys

import torch
from torch.profiler import ProfilerActivity, profile

from animus3d_shared.samples import make_character
from animus3d_shared.settings import JobSettings
from animus3d_lab.bench import build_full_size_prior
from animus3d_worker.events import JobEvents
from animus3d_worker.pipeline import encode_conditioning
from animus3d_worker.priors import lora
from animus3d_worker.render import make_cameras
from animus3d_worker.splat_tensors import SplatTensors
from animus3d_worker.stages.core import MotionProblem
from animus3d_worker.stages.msd import optimise_motion
from animus3d_worker.timing import SectionTimer

dev = torch.device("cuda")
prior = build_full_size_prior(dev, torch.bfloat16)
splat = make_character(seed=0, count=200_000)
settings = JobSettings.from_preset(sys.argv[1] if len(sys.argv) > 1 else "msd")
t = SplatTensors.from_splat(splat, dev)
cams = make_cameras(*t.bbox, resolution=settings.resolution, orbit_views=settings.orbit_views, device=dev)
cond = encode_conditioning(prior, "the character waves its right arm", "the character, standing still")
problem = MotionProblem.build(t, cams, settings)
params = lora.inject_lora(prior.unet, rank=16, alpha=16.0)
g = torch.Generator().manual_seed(0)
for cast in (False, True):
    if cast:
        for p in params:
            p.data = p.data.to(prior.dtype)
    optimise_motion(prior, problem, cond, settings.replace(msd_steps=2), JobEvents(), g)
    timer = SectionTimer(dev)
    optimise_motion(prior, problem, cond, settings.replace(msd_steps=3), JobEvents(), g, timer=timer)
    print(f"LoRA cast to base dtype: {cast}: " + ", ".join(f"{k} {timer.mean_ms(k):.0f} ms" for k in timer.totals))
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    optimise_motion(prior, problem, cond, settings.replace(msd_steps=2), JobEvents(), g)
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15))
