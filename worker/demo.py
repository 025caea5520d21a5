"""`make demo`: animate the bundled sample character with the embedded default prior.

Runs the default `standard` preset on the GPU when there is one, otherwise on the CPU with fewer fit
steps, orbit views and refinement steps. Writes everything under ``--out`` (default out/demo).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from animus3d_shared.settings import DEFAULT_PRESET, JobSettings

DEFAULT_PROMPT = "the character waves its right arm"
REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "assets" / "sample_character.ply"

# The demo runs the default `standard` preset: the prior draws the character moving as prompted, the
# motion field is fitted to that clip and refined. On a CPU fewer fit steps, orbit views and refinement
# steps keep it to about two minutes (docs/benchmarks.md).
CPU_DEMO = dict(resolution=64, orbit_views=2, guide_steps=80, refine_steps=10, preview_every=0)
GPU_DEMO = dict(resolution=64)  # the embedded prior's training size (the worker would say so and use it)


def load_sample():
    from animus3d_shared.ply import read_ply
    from animus3d_shared.samples import make_character

    return read_ply(SAMPLE) if SAMPLE.exists() else make_character(seed=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set arap_weight=64")
    args = parser.parse_args(argv)

    import torch

    from .events import JobEvents, Progress
    from .outputs import write_outputs
    from .devices import resolve_device
    from .pipeline import run_job

    device = resolve_device(args.device)
    from .commands.animate import parse_overrides

    overrides = parse_overrides(args.set)
    demo = GPU_DEMO if device.type == "cuda" else CPU_DEMO
    settings = JobSettings.from_preset(DEFAULT_PRESET, **{**demo, **overrides})
    splat = load_sample()
    print(f"animus3d demo: {splat.count} Gaussians, prompt {args.prompt!r}, device {device}, preset {settings.preset}"
          f"{'' if device.type == 'cuda' else ' (CPU budget)'}")
    last = {"stage": None, "t": 0.0}

    def on_progress(p: Progress) -> None:
        now = time.monotonic()
        if p.message:  # what a stage says (how the prompt was read, which guide draw was kept…) always shows
            print(f"  [{p.stage}] {p.message}", flush=True)
        elif p.stage != last["stage"] or now - last["t"] > 2.0 or p.step == p.total:
            losses = " ".join(f"{k}={v:.4g}" for k, v in p.losses.items())
            eta = f" eta {p.eta_s:.0f}s" if p.eta_s is not None else ""
            print(f"  [{p.stage}] {p.step}/{p.total} {losses}{eta}", flush=True)
            last.update(stage=p.stage, t=now)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = run_job(splat, args.prompt, settings, seed=args.seed, device=str(device),
                     events=JobEvents(on_progress=on_progress))
    written = write_outputs(args.out, splat, result, device=str(device))
    print(f"wrote {len(list(written['frames'].glob('*.ply')))} frames, animation.npz, preview.mp4, job.json to {args.out}"
          f" in {result.timings['total']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
