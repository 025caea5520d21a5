"""How the worker reads prompts (``animus3d_worker.understanding``), measured on a suite of prompts.

For each prompt of a suite (JSON lines with ``prompt`` and ``expected``), the nearest learnt motion
and its similarity; the table counts, for each threshold, the prompts at or above it and how many of
those have the expected motion nearest. Tune on ``evals/dev_paraphrases.jsonl``; the held-out suites
are for measuring once.

    python -m animus3d_lab.reading evals/dev_paraphrases.jsonl [--prior FOLDER] [--list]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from animus3d_worker.priors.loading import EMBEDDED_FOLDER
from animus3d_worker.understanding import LearntMotions, understand

THRESHOLDS = (0.35, 0.40, 0.45, 0.50, 0.55)


@dataclass(frozen=True)
class Reading:
    prompt: str
    expected: str
    nearest: str
    similarity: float
    reading: str | None

    @property
    def right(self) -> bool:
        return self.nearest == self.expected


def read_suite(suite: str | Path, prior: str | Path = EMBEDDED_FOLDER) -> list[Reading]:
    learnt = LearntMotions.read(prior)
    if learnt is None:
        raise SystemExit(f"{prior} lists no learnt motions")
    out = []
    for line in Path(suite).read_text().splitlines():
        if not line.strip():
            continue
        case = json.loads(line)
        result = understand(case["prompt"], learnt)
        label, sim = result.nearest[0]
        out.append(Reading(case["prompt"], case["expected"], label, sim, result.reading))
    return out


def threshold_table(readings: list[Reading], thresholds=THRESHOLDS) -> list[tuple[float, int, int]]:
    """(threshold, prompts at or above it, of those with the expected motion nearest)."""
    return [(t, sum(r.similarity >= t for r in readings), sum(r.similarity >= t and r.right for r in readings))
            for t in thresholds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--prior", default=str(EMBEDDED_FOLDER))
    parser.add_argument("--list", action="store_true", help="print every prompt with its nearest motion")
    args = parser.parse_args(argv)
    readings = read_suite(args.suite, args.prior)
    if args.list:
        for r in sorted(readings, key=lambda r: r.similarity):
            print(f"{r.similarity:.2f} {'ok' if r.right else '--'} {r.nearest:14s} {r.expected:14s} {r.prompt}")
    print(f"{args.suite}: {len(readings)} prompts, nearest motion right for {sum(r.right for r in readings)}")
    print("threshold  read  right")
    for t, read, right in threshold_table(readings):
        print(f"{t:9.2f}  {read:4d}  {right:5d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
