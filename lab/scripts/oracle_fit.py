"""How much of a right guide clip does the fit keep? (a diagnostic for the generate-then-fit stage)

    python lab/scripts/oracle_fit.py --suite evals/suite.jsonl [--only spin,grow] [--set global_motion=true]

For each suite case the guide is not drawn from the prior but rendered from the ground truth: the
case's object moving as its expected motion (the suite's own synthetic motion, amplitude 1), from
the front view the guide stage fits to, by the same renderer and cameras. The field is fitted to
that clip exactly as the `standard` preset's guide stage does (``fit_to_guide``; no refinement,
which needs the prior) and the result is classified like `animus3d evaluate`. What it gets wrong
the fit gets wrong: the guide is perfect. ``--shard I/N`` splits the cases across processes.

``--guide prior`` fits the clip the prior draws instead (``draw_guide_clips``, as the pipeline does
with the job's seed), the other half of the question. ``--sheets DIR`` writes a PNG per case: the
guide (top), the fitted field's render (middle) and the ground truth (bottom), 8 frames each.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from animus3d_shared.settings import JobSettings
from animus3d_worker.commands.animate import parse_overrides
from animus3d_lab.evaluation import evaluate_animation, load_suite
from animus3d_worker.events import JobEvents
from animus3d_worker.motion import apply_motion
from animus3d_lab.motion_data import make_object, motion_animation
from animus3d_worker.pipeline import field_animation, resolve_device
from animus3d_worker.render import make_cameras
from animus3d_worker.splat_tensors import SplatTensors
from animus3d_worker.stages.guide import FRONT_VIEW, field_front_clip, fit_to_guide
from animus3d_worker.stages.core import MotionProblem


def oracle_guide(problem: MotionProblem, obj, label: str, frames: int) -> torch.Tensor:
    """The front-view clip [T, 3, H, W] of ``obj`` moving as ``label`` (the ground truth)."""
    truth = motion_animation(obj, label, frames, 1.0)
    device = problem.splat.means.device
    deltas = [torch.as_tensor(a, device=device) for a in (truth.delta_position, truth.delta_rotation, truth.delta_scale)]
    with torch.no_grad():
        means, quats, log_scales = apply_motion(problem.splat.means, problem.splat.quats, problem.splat.log_scales, *deltas)
        return problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))[0].float()


def prior_guide(prior, problem: MotionProblem, case, settings: JobSettings, seed: int) -> torch.Tensor:
    """The clip the pipeline's guide stage would fit to (same seeding as ``run_job``)."""
    from animus3d_worker.pipeline import derive_static_prompt, encode_conditioning
    from animus3d_worker.stages.guide import draw_guide_clips

    cond = encode_conditioning(prior, case.prompt, derive_static_prompt(case.prompt))
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return draw_guide_clips(prior, problem, cond, settings, generator).kept_clip.to(problem.splat.means.device)


def write_sheet(path, rows: list[torch.Tensor]) -> None:
    """Every other frame of each clip [T, 3, H, W], clips stacked top to bottom."""
    import numpy as np

    from animus3d_worker.outputs import write_contact_sheet

    frames = torch.cat([r[::2].clamp(0, 1) for r in rows], dim=2)  # [T/2, 3, rows·H, W]
    write_contact_sheet(path, (frames.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8))


def case_guides(case, settings: JobSettings, device: torch.device, seed: int, prior):
    """(object, motion problem, guide, ground-truth clip) of a suite case; the guide is the truth
    without a prior, else the prior's draw."""
    torch.manual_seed(seed)
    obj = make_object(case.kind, case.seed, case.count)
    tensors = SplatTensors.from_splat(obj.splat, device)
    lo, hi = tensors.bbox
    cameras = make_cameras(lo, hi, resolution=settings.resolution, orbit_views=settings.orbit_views,
                           elevation_deg=settings.camera_elevation_deg, device=device)
    problem = MotionProblem.build(tensors, cameras, settings)
    truth = oracle_guide(problem, obj, case.expected, settings.frames)
    guide = truth if prior is None else prior_guide(prior, problem, case, settings, seed)
    return obj, problem, guide, truth


def search_case(case, settings: JobSettings, device: torch.device, seed: int = 0, prior=None) -> dict:
    """The turn ``search_yaw`` finds in the case's guide (no fit)."""
    import math

    from animus3d_worker.stages.yaw_search import search_yaw

    _, problem, guide, _ = case_guides(case, settings.replace(global_motion=True), device, seed, prior)
    yaw = search_yaw(problem, guide, FRONT_VIEW)
    return {"id": case.id, "expected": case.expected,
            "turn_degrees": None if yaw is None else round(math.degrees(float(yaw[-1])), 1)}


def fit_case(case, settings: JobSettings, device: torch.device, seed: int = 0, prior=None, sheets=None) -> dict:
    obj, problem, guide, truth = case_guides(case, settings, device, seed, prior)
    start = time.perf_counter()
    losses = fit_to_guide(problem, guide, settings, JobEvents()).losses
    seconds = time.perf_counter() - start
    metrics = evaluate_animation(obj.splat, field_animation(problem, settings.frames, settings.fps), case.expected)
    if sheets:
        from pathlib import Path

        fitted = field_front_clip(problem).float()
        Path(sheets).mkdir(parents=True, exist_ok=True)
        write_sheet(Path(sheets) / f"{case.id}-{metrics.predicted}.png", [guide, fitted, truth])
    return {"id": case.id, "expected": case.expected, "predicted": metrics.predicted, "correct": metrics.correct,
            "magnitude": round(metrics.magnitude, 4), "psnr": round(metrics.appearance_psnr, 2),
            "guide_loss": round(losses["guide"][-1], 5), "fit_seconds": round(seconds, 1),
            "scores": metrics.scores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="evals/suite.jsonl")
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="setting override (repeatable)")
    ap.add_argument("--only", help="comma-separated expected motions or case ids to run")
    ap.add_argument("--shard", default="0/1", metavar="I/N")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resolution", type=int, default=64, help="the embedded prior's (the guide's) resolution")
    ap.add_argument("--out", help="write the rows as JSON here")
    ap.add_argument("--guide", choices=("truth", "prior"), default="truth",
                    help="fit the ground-truth clip (default) or the clip the prior draws")
    ap.add_argument("--prior", default="embedded", help="with --guide prior")
    ap.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                    help="with --guide prior: the prior's precision (a job on CUDA uses bfloat16 unless configured)")
    ap.add_argument("--seed", type=int, default=0, help="the job seed (the guide's noise)")
    ap.add_argument("--sheets", metavar="DIR", help="write guide / fitted / truth contact sheets here")
    ap.add_argument("--search-only", action="store_true",
                    help="no fit: report the turn the guide stage's turn search (guide_yaw_search) finds in each guide")
    args = ap.parse_args()

    overrides = parse_overrides(args.set)
    settings = JobSettings.from_preset(args.preset, resolution=args.resolution, **overrides)
    device = resolve_device(args.device)
    cases = load_suite(args.suite)
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c.expected in wanted or c.id in wanted]
    index, count = (int(x) for x in args.shard.split("/"))
    cases = cases[index::count]
    prior = None
    if args.guide == "prior":
        from animus3d_worker.priors import load_prior

        prior = load_prior(args.prior, device=str(device), dtype=getattr(torch, args.dtype))
    rows = []
    if args.search_only:
        for case in cases:
            row = search_case(case, settings, device, args.seed, prior)
            rows.append(row)
            found = "no turn" if row["turn_degrees"] is None else f"turn of {row['turn_degrees']:+.0f}°"
            print(f"{case.id:>22} expected {row['expected']:>11}: {found}", flush=True)
        turned = [r["id"] for r in rows if r["turn_degrees"] is not None]
        print(f"{args.guide} guide: a turn is found in {len(turned)}/{len(rows)}: {', '.join(turned)}")
        return
    for case in cases:
        row = fit_case(case, settings, device, args.seed, prior, args.sheets)
        rows.append(row)
        mark = "✓" if row["correct"] else "✗"
        print(f"{case.id:>22} expected {row['expected']:>11} fitted {row['predicted']:>11} {mark} "
              f"magnitude {row['magnitude']:.3f} PSNR {row['psnr']:.1f} guide loss {row['guide_loss']:.4f} "
              f"({row['fit_seconds']:.0f} s)", flush=True)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump({"settings": overrides, "preset": args.preset, "rows": rows}, fh, indent=1)
    right = sum(bool(r["correct"]) for r in rows)
    print(f"{args.guide} guide, {args.preset} {' '.join(args.set)}: the fit keeps {right}/{len(rows)} motions")


if __name__ == "__main__":
    main()
