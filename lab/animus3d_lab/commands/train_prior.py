"""`animus3d train-prior --out DIR --minutes M [--resume CKPT] [--device cuda]`: train the embedded prior.

Renders the synthetic dataset once into DIR (cached), trains for M minutes of wall time, checkpoints
into DIR/checkpoint (resumed automatically on the next call) and exports the fp16 diffusers folder to
DIR/export (or --export), the layout of ``worker/assets/prior/``.

`--init-from PRIOR` starts a new run from an exported prior (its VAE, and its UNet where the shapes
agree). `--make-text-transport FOLDER` writes, for the run's captions, the transport copy of the frozen
text encoder for a machine without its package and exits; `--text-transport FOLDER` trains with it.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace

from animus3d_worker.commands import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory (dataset, checkpoint, export)")
    parser.add_argument("--minutes", type=float, help="wall-clock budget of this call (required to train)")
    parser.add_argument("--resume", metavar="CKPT", help="checkpoint folder (default: DIR/checkpoint if present)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--export", metavar="DIR", help="where to write the exported prior (default: DIR/export)")
    parser.add_argument("--config", metavar="FILE.json", help="TrainConfig fields as JSON (new runs only)")
    parser.add_argument("--clips", type=int, help="dataset size, default 2400 (may change on resume)")
    parser.add_argument("--data-seed", type=int, help="seed of the clips' motions and objects (may change on resume)")
    parser.add_argument("--objects-per-kind", type=int,
                        help="distinct objects a kind, default 2000 (a saved config without it: 6; may change on resume)")
    parser.add_argument("--first-object-seed", type=int,
                        help="the first object seed, default 10000, clear of the suite's objects (may change on "
                             "resume; --objects-per-kind on its own sets it to the default too)")
    parser.add_argument("--vae-steps", type=int, help="VAE reconstruction steps before diffusion (new runs only)")
    parser.add_argument("--amplitude-min", type=float,
                        help="smallest motion amplitude of the clips, default 0.7 (may change on resume)")
    parser.add_argument("--batch-size", type=int, help="clips per diffusion step (may change on resume)")
    parser.add_argument("--lr", type=float, help="diffusion learning rate (may change on resume)")
    parser.add_argument("--motion-weight", type=float,
                        help="extra ε-loss weight on the latents that move, default 0 (may change on resume)")
    parser.add_argument("--mirror-probability", type=float,
                        help="share of training samples flipped left-right with 'left'/'right' swapped in "
                             "the caption, default 0 (may change on resume)")
    parser.add_argument("--ema-decay", type=float,
                        help="export a moving average of the diffusion weights with this decay, e.g. 0.999; "
                             "default 0: off (may change on resume)")
    parser.add_argument("--render-backend", default="auto", help="dataset renderer: auto, torch or gsplat")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in this call")
    parser.add_argument("--init-from", metavar="PRIOR", help="exported prior a new run starts from")
    parser.add_argument("--text-transport", metavar="FOLDER",
                        help="transport copy of the frozen text encoder (made by --make-text-transport)")
    parser.add_argument("--make-text-transport", metavar="FOLDER",
                        help="write the transport copy of the text encoder for this run's captions, then exit")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..train_prior import PriorTrainer, TrainConfig, TrainPriorError, training_captions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.make_text_transport is None and (args.minutes is None or args.minutes <= 0):
        raise CommandError("--minutes must be given and positive")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError("--device cuda was asked for but CUDA is not available")
    overrides = {k: v for k, v in (("vae_steps", args.vae_steps),) if v is not None}
    try:
        base = TrainConfig()
        if args.config:
            try:
                base = TrainConfig.from_json({**base.to_json(), **json.loads(open(args.config).read())})
            except (OSError, ValueError, TypeError) as exc:
                raise CommandError(f"bad --config {args.config}: {exc}") from None
        tuning = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr),
                                    ("amplitude_min", args.amplitude_min),
                                    ("motion_weight", args.motion_weight),
                                    ("mirror_probability", args.mirror_probability), ("clips", args.clips),
                                    ("data_seed", args.data_seed), ("objects_per_kind", args.objects_per_kind),
                                    ("first_object_seed", args.first_object_seed),
                                    ("ema_decay", args.ema_decay)) if v is not None}
        if args.objects_per_kind is not None and args.first_object_seed is None:
            # A run whose saved config has no objects_per_kind resumes with first seed 0: more objects from there would
            # take in the suite's objects (seeds 100-112).
            tuning["first_object_seed"] = TrainConfig.first_object_seed
        if args.make_text_transport:
            from ..frozen_text import write_transport_copy

            cfg = replace(base, **overrides, **tuning)
            from ..heldout import load_split
            from ..prior_check import evaluation_captions

            # the run's captions, and those the checks score (so the copy can also evaluate the prior)
            captions = training_captions(cfg) + evaluation_captions(load_split())
            manifest = write_transport_copy(args.make_text_transport, captions, cfg.text_length)
            print(json.dumps({"transport": args.make_text_transport, **manifest}))
            return 0
        trainer = PriorTrainer(args.out, replace(base, **overrides), device=args.device, resume=args.resume,
                               render_backend=args.render_backend, tuning=tuning, init_from=args.init_from,
                               text_transport=args.text_transport)
        state = trainer.train(minutes=args.minutes, max_steps=args.max_steps)
        folder = trainer.export(args.export or f"{args.out}/export")
    except TrainPriorError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps({"phase": state.phase, "step": state.step, "seconds": round(state.total_seconds, 1),
                      "last_losses": state.losses[-5:], "export": str(folder)}))
    return 0
