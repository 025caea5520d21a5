"""`animus3d check-prior [--prior SPEC] [--clips N] [--device D] [--out FILE.json]`.

Does the prior know the motions? A diffusion-classifier test on held-out synthetic clips
(``animus3d_lab.prior_check``): prints the accuracy, chance level, per-motion tallies and the
most frequent confusions. No pipeline runs; a few seconds on a GPU, minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from animus3d_worker.commands import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prior", default="embedded", help="prior spec or diffusers folder (default: embedded)")
    parser.add_argument("--clips", type=int, default=52, help="held-out clips to classify (default 52)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--render-backend", default="auto", help="clip renderer: auto, torch or gsplat")
    parser.add_argument("--new-objects", action="store_true",
                        help="objects no training run uses (default: seeds 0-5 a kind, the objects of a config without objects_per_kind)")
    parser.add_argument("--suite", metavar="FILE.jsonl",
                        help="classify each case's ground-truth clip among captions worded like its prompt "
                             "(held-out cases: evals/suite_heldout.jsonl, wording from --split)")
    parser.add_argument("--cases-log", metavar="FILE.jsonl",
                        help="with --suite: append each case's guess here as it is made, and count the cases "
                             "already in it without running them again (a cut run continues)")
    parser.add_argument("--split", metavar="FILE.json", help="the held-out split (default evals/split.json)")
    parser.add_argument("--text-transport", metavar="FOLDER",
                        help="load a MiniLM-conditioned prior folder with this transport copy of its text encoder")
    parser.add_argument("--out", metavar="FILE.json", help="write the result here")


def _read_cases_log(path: str | None) -> dict[str, dict]:
    """Case id -> {"guess", "chance"} of a --cases-log file (empty when there is none yet)."""
    if not path or not Path(path).is_file():
        return {}
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return {row["id"]: row for row in rows}


def run(args: argparse.Namespace) -> int:
    from animus3d_worker.pipeline import resolve_device
    from ..prior_check import check_prior, confusion_summary
    from animus3d_worker.priors import PriorLoadError, load_prior

    if args.clips < 1:
        raise CommandError("--clips must be at least 1")
    try:
        device = resolve_device(args.device)
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    try:
        if args.text_transport:
            from ..frozen_text import FrozenTextError, load_prior_with_transport

            try:
                prior = load_prior_with_transport(args.prior, args.text_transport, device=device)
            except (FrozenTextError, OSError) as exc:
                raise CommandError(str(exc)) from None
        else:
            prior = load_prior(args.prior, device=device)
    except PriorLoadError as exc:
        raise CommandError(str(exc)) from None
    if args.suite:
        from ..heldout import SPLIT_FILE, load_split
        from ..prior_check import check_prior_on_cases

        try:
            cases = [json.loads(line) for line in Path(args.suite).read_text().splitlines() if line.strip()]
            split = load_split(args.split or SPLIT_FILE)
            done, log = _read_cases_log(args.cases_log), None
            if args.cases_log:
                log = open(args.cases_log, "a")

            def on_case(case, guess, chance):
                if log is not None:
                    log.write(json.dumps({"id": case.get("id"), "expected": case["expected"], "guess": guess,
                                          "chance": chance}) + "\n")
                    log.flush()

            try:
                result = check_prior_on_cases(prior, cases, split, frames=args.frames, resolution=args.resolution,
                                              backend=args.render_backend, done=done, on_case=on_case)
            finally:
                if log is not None:
                    log.close()
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot check {args.suite}: {exc}") from None
        what = f"cases of {args.suite}"
    else:
        result = check_prior(prior, args.clips, frames=args.frames, resolution=args.resolution,
                             backend=args.render_backend, new_objects=args.new_objects)
        what = "held-out clips"
    print(f"prior {args.prior}: recognised {result.correct}/{result.clips} {what} "
          f"({result.accuracy:.0%}; chance {result.chance:.0%})")
    for label, (hit, total) in sorted(result.per_label.items()):
        print(f"  {label:12s} {hit}/{total}")
    for expected, guessed, n in confusion_summary(result):
        print(f"  confused {expected} -> {guessed}: {n}")
    if args.out:
        Path(args.out).write_text(json.dumps({"prior": args.prior, "new_objects": args.new_objects, "suite": args.suite,
                                              **result.to_json()}, indent=2) + "\n")
    return 0
