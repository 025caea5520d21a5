"""`animus3d animate FILE.ply --prompt TEXT (--local | --connect ADDR) --out DIR`: animate a splat.

With ``--local`` the pipeline runs in this process; with ``--connect`` a worker runs it and this
command shows its progress, then writes the same outputs. Ctrl-C on a remote job cancels it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from animus3d_shared.settings import ARTIST_PRESETS, DEFAULT_PRESET

from . import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..service.client_options import add_connection_arguments

    parser.add_argument("ply", metavar="FILE.ply", help="the static 3DGS splat to animate")
    parser.add_argument("--prompt", required=True, help="what the motion should be")
    parser.add_argument("--static-prompt", help="a description of the still subject (default: derived)")
    parser.add_argument("--local", action="store_true", help="run the pipeline in this process")
    add_connection_arguments(parser, required=False)
    parser.add_argument("--preset", default=DEFAULT_PRESET, help=f"{', '.join(ARTIST_PRESETS)} (default: {DEFAULT_PRESET}); also msd, paper (the paper's method) and test")
    parser.add_argument("--frames", type=int, help="frames of the optimised clip")
    parser.add_argument("--device", default="auto", help="--local only: cpu, cuda or auto")
    parser.add_argument("--models", metavar="CONFIG", help="--local only: model configuration file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override one setting (repeatable), e.g. --set msd_steps=800")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--no-preview", action="store_true", help="skip rendering preview.mp4")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["msd_steps=800", "t_anneal=false", "noise_mode=random"]`` → typed values."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if isinstance(value, (list, dict)) or value is None:
            value = text
        overrides[key.strip()] = value
    return overrides


def run(args: argparse.Namespace) -> int:
    from animus3d_shared.ply import read_ply
    from animus3d_shared.settings import JobSettings, SettingsError

    if args.local == bool(args.connect):
        raise CommandError("choose exactly one of --local or --connect ADDR")
    if not args.prompt.strip():
        raise CommandError("--prompt must not be empty")
    overrides = parse_overrides(args.overrides)
    if args.frames is not None:
        overrides["frames"] = args.frames
    try:
        settings = JobSettings.from_preset(args.preset, **overrides)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    try:
        splat = read_ply(args.ply)
    except FileNotFoundError:
        raise CommandError(f"{args.ply}: no such file") from None
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc) if str(args.ply) in str(exc) else f"{args.ply}: {exc}") from None
    if splat.count < 2:  # a motion needs neighbours: the regularisers compare each Gaussian with others
        raise CommandError(f"{args.ply}: has {splat.count} Gaussian(s); animating needs at least 2")
    out_dir = Path(args.out)
    with ProgressDisplay() as display:
        display.note(f"{splat.count} Gaussians, prompt {args.prompt!r}, preset {settings.preset}")
        if args.local:
            result = run_local(args, splat, settings, display)
        else:
            wire_settings = {"preset": args.preset, **overrides}
            result = run_remote(args, splat, wire_settings, display)
        if result.motion_prompt and result.motion_prompt != result.prompt:
            display.note(f"read as {result.motion_prompt!r}")
        for warning in result.warnings:
            display.warn(warning)
        display.note(f"writing outputs to {out_dir}")
    from ..outputs import write_outputs

    written = write_outputs(out_dir, splat, result, render_preview=not args.no_preview)
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    return 0


def run_local(args, splat, settings, display: "ProgressDisplay"):
    from ..events import JobEvents
    from ..models import ModelConfig, ModelConfigError
    from ..pipeline import run_job

    try:
        models = ModelConfig.load(args.models) if args.models else ModelConfig()
        return run_job(splat, args.prompt, settings, static_prompt=args.static_prompt, seed=args.seed,
                       device=args.device, models=models, events=JobEvents(on_progress=display.update))
    except (ModelConfigError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None


def run_remote(args, splat, wire_settings: dict, display: "ProgressDisplay"):
    from animus3d_shared.client import ClientError, WorkerUnreachable
    from animus3d_shared.protocol import Accepted, Cancelled, Error, Progress, Result, Welcome

    from ..events import JobResult
    from ..events import Progress as PipelineProgress
    from ..service.client_options import client_from_args
    from ..service.security import SecurityError

    try:
        client = client_from_args(args, client_name="animus3d-animate")
    except SecurityError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    job_id: str | None = None
    try:
        client.connect()
        try:
            welcome = client.wait_for(lambda m: isinstance(m, (Welcome, Error)), args.timeout)
        except (WorkerUnreachable, TimeoutError):
            raise CommandError(f"worker at {args.connect} did not answer within {args.timeout:g} s") from None
        if isinstance(welcome, Error):
            raise CommandError(f"worker refused: {welcome.code}: {welcome.message}")
        display.note(f"worker {welcome.worker_version} on {welcome.device}")
        client.submit(splat, args.prompt, static_prompt=args.static_prompt, settings=wire_settings, seed=args.seed)
        while True:
            for msg in client.poll(max_messages=64, max_time_s=0.05):
                if isinstance(msg, Accepted):
                    job_id = msg.job_id
                    display.note(f"job {job_id} accepted, queue position {msg.queue_position}")
                elif isinstance(msg, Progress):
                    display.update(PipelineProgress(msg.stage, msg.step, msg.total, dict(msg.losses),
                                                    msg.eta_s, msg.message))
                elif isinstance(msg, Result):
                    return JobResult(animation=msg.animation, settings=dict(msg.settings), seed=msg.seed,
                                     prompt=msg.prompt, static_prompt=msg.static_prompt,
                                     motion_prompt=msg.motion_prompt, device=msg.device,
                                     timings=dict(msg.timings), losses=dict(msg.losses),
                                     loss_history={k: list(v) for k, v in msg.loss_history.items()},
                                     warnings=list(msg.warnings))
                elif isinstance(msg, Cancelled):
                    raise CommandError(f"job {msg.job_id} was cancelled on the worker")
                elif isinstance(msg, Error):
                    raise CommandError(f"worker error {msg.code}: {msg.message}")
            time.sleep(0.02)
    except KeyboardInterrupt:
        if job_id is not None:
            display.note(f"cancelling job {job_id}…")
            client.cancel(job_id)
            try:
                client.wait_for(lambda m: isinstance(m, (Cancelled, Error)) and getattr(m, "job_id", None) == job_id, 5.0)
            except (TimeoutError, ClientError):
                pass
        raise
    except ClientError as exc:
        raise CommandError(str(exc)) from None
    finally:
        client.close()


class ProgressDisplay:
    """A rich progress bar: stage, step/total, losses, ETA. Plain lines when not on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[eta]}"),
            console=self.console, transient=False,
        )
        self.task = self.progress.add_task("starting", total=1, losses="", eta="")
        self._last_plain = 0.0

    def __enter__(self) -> "ProgressDisplay":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def note(self, text: str) -> None:
        self.progress.console.print(text)

    def warn(self, text: str) -> None:
        self.progress.console.print(f"warning: {text}", style="bold yellow", markup=False, highlight=False)

    def update(self, p) -> None:
        losses = " ".join(f"{k}={v:.3g}" for k, v in list(p.losses.items())[:4])
        eta = f"eta {p.eta_s:.0f}s" if p.eta_s is not None else ""
        self.progress.update(self.task, description=p.stage, completed=p.step, total=max(p.total, 1),
                             losses=losses, eta=eta)
