"""`animus3d evaluate --suite FILE.jsonl [--ablation NAME] [--preset P] [--device D] [--out DIR]`.

Runs the pipeline on every case of the suite and reports per case and overall: motion accuracy,
magnitude, appearance PSNR/SSIM (global motion removed, and frame 0), smoothness and ARAP distortion.
``--ablation``: none, sds, random_noise, text_static, static_negative, arap=<weight> or arap_sweep (one run per weight).
``--ground-truth`` measures the suite's parametric motions instead of running the pipeline (checks the metric).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from animus3d_worker.commands import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", required=True, metavar="FILE.jsonl", help="evaluation cases")
    parser.add_argument("--ablation", default="none", help="none, sds, random_noise, text_static, static_negative, arap=W, arap_sweep")
    parser.add_argument("--preset", default="standard", help="settings preset (draft, standard, high; msd, paper; test)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override one setting (repeatable)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--models", metavar="CONFIG", help="model configuration file")
    parser.add_argument("--limit", type=int, help="only the first N cases")
    parser.add_argument("--shard", metavar="I/N", help="only cases I, I+N, I+2N… (0-based; for parallel runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ground-truth", action="store_true", help="score the ground-truth motions, no pipeline")
    parser.add_argument("--out", metavar="DIR", help="write results.json here")


def _table(title: str, rows: list[dict], summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("case", "expected", "predicted", "ok", "magnitude", "PSNR", "SSIM", "f0 PSNR", "smooth", "ARAP"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], str(r["expected"]), r["predicted"], "✓" if r["correct"] else "✗",
                      f"{r['magnitude']:.3f}", f"{r['appearance_psnr']:.1f}", f"{r['appearance_ssim']:.3f}",
                      f"{r['frame0_psnr']:.1f}", f"{r['smoothness']:.4f}", f"{r['distortion']:.4f}")
    table.add_row("overall", "", "", f"{summary['accuracy']:.0%}", f"{summary['magnitude']:.3f}",
                  f"{summary['appearance_psnr']:.1f}", f"{summary['appearance_ssim']:.3f}",
                  f"{summary['frame0_psnr']:.1f}", f"{summary['smoothness']:.4f}", f"{summary['distortion']:.4f}")
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    from animus3d_shared.settings import JobSettings, SettingsError

    from animus3d_lab import evaluation as ev
    from animus3d_worker.models import ModelConfig, ModelConfigError
    from animus3d_worker.commands.animate import parse_overrides

    try:
        cases = ev.load_suite(args.suite)
        names = [f"arap={w:g}" for w in ev.ARAP_SWEEP] if args.ablation == "arap_sweep" else [args.ablation]
        variants = {name: ev.ablation_overrides(name) for name in names}
        models = ModelConfig.load(args.models) if args.models else ModelConfig()
    except (ev.EvaluationError, ModelConfigError) as exc:
        raise CommandError(str(exc)) from None
    if args.shard:
        cases = cases[_shard_slice(args.shard)]
    if args.limit:
        cases = cases[: args.limit]
    report: dict = {"suite": str(args.suite), "preset": args.preset, "models": models.describe(), "runs": {}}
    priors = None
    for name, overrides in variants.items():
        rows = []
        if args.ground_truth:
            from ..motion_data import make_object, motion_animation

            for case in cases:
                obj = make_object(case.kind, case.seed, case.count)
                metrics = ev.evaluate_animation(obj.splat, motion_animation(obj, case.expected), case.expected)
                rows.append({"id": case.id, "prompt": case.prompt, **ev.metrics_dict(metrics)})
        else:
            from animus3d_worker.pipeline import PriorCache

            priors = priors or PriorCache()
            try:
                settings = JobSettings.from_preset(args.preset, **{**parse_overrides(args.overrides), **overrides})
            except (SettingsError, TypeError) as exc:
                raise CommandError(f"ablation {name}: {exc}") from None
            if name in ev.MSD_ABLATIONS and settings.msd_steps == 0:
                raise CommandError(f"ablation {name} changes MSD, but preset {args.preset!r} runs no MSD steps "
                                   "(it generates a guide clip and fits it): use --preset msd")
            for case in cases:
                rows.append(ev.run_case(case, settings, device=args.device, models=models, priors=priors,
                                        seed=args.seed))
                r = rows[-1]
                print(f"{name} {r['id']}: expected {r['expected']} predicted {r['predicted']} "
                      f"PSNR {r['appearance_psnr']:.1f}" + "".join(f" | {m}" for m in r.get("messages", [])), flush=True)
                report["runs"][name] = {"overrides": overrides, "summary": ev.summarise(rows), "cases": rows}
                _write_report(args.out, report)  # partial results survive a run stopped by a time limit
        summary = ev.summarise(rows)
        report["runs"][name] = {"overrides": overrides, "summary": summary, "cases": rows}
        _table(f"{Path(args.suite).name} · ablation {name}" + (" · ground truth" if args.ground_truth else ""),
               rows, summary)
    _write_report(args.out, report)
    return 0


def _shard_slice(text: str) -> slice:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise CommandError(f"--shard must be I/N with integers, got {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise CommandError(f"--shard {text}: need 0 <= I < N")
    return slice(index, None, count)


def merge_reports(reports: list[dict]) -> dict:
    """One report from the results.json of several shards of the same suite (cases in suite order)."""
    from animus3d_lab import evaluation as ev

    if not reports:
        raise CommandError("no reports to merge")
    merged = {k: v for k, v in reports[0].items() if k != "runs"} | {"runs": {}}
    order = {case.id: i for i, case in enumerate(ev.load_suite(reports[0]["suite"]))} \
        if Path(reports[0]["suite"]).is_file() else {}
    for report in reports:
        for name, run in report.get("runs", {}).items():
            target = merged["runs"].setdefault(name, {"overrides": run.get("overrides", {}), "cases": []})
            target["cases"].extend(run.get("cases", []))
    for run in merged["runs"].values():
        run["cases"].sort(key=lambda r: order.get(r["id"], len(order)))
        run["summary"] = ev.summarise(run["cases"])
    return merged


def print_report(report: dict) -> None:
    for name, run in report["runs"].items():
        _table(f"{Path(report['suite']).name} · ablation {name} · {len(run['cases'])} cases", run["cases"],
               run["summary"])


def _write_report(out_dir: str | None, report: dict) -> None:
    """Writes ``report`` to ``out_dir/results.json`` (nothing when no directory was given)."""
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
