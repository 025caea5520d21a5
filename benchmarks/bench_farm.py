"""Benchmark: jobs per hour and per-job latency of `animus3d farm` with N slots.

    python benchmarks/bench_farm.py --slots 1 --slots 2                    # CPU, `test` preset
    python benchmarks/bench_farm.py --device cuda --preset standard --slots 1 --slots 2 --slots 4 \
        --models models.toml                                               # N jobs sharing one GPU

For each ``--slots N`` it starts a local Ray cluster and a farm with N slots (on cuda each slot holds
1/N of the card), submits ``--jobs`` jobs at once from as many clients over ZeroMQ, and prints, per
N: jobs per hour (jobs / wall time from the first SUBMIT to the last RESULT) and the per-job
latency (SUBMIT to RESULT: median and max), plus the machine. The first round's actors load the
prior, so ``--warmup`` jobs run first and are not counted. It is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

def start_farm(directory: Path, slots: int, device: str, models: str | None, cpus_per_slot: float):
    from helpers_worker import launch_worker

    args = ["--ray", "local", "--slots", str(slots), "--device", device, "--max-queued-per-client", "64",
            "--max-queued", "1000", "--cpus-per-slot", str(cpus_per_slot), "--gpus-per-slot", str(1.0 / slots)]
    if models:
        args += ["--models", models]
    if device == "cpu":
        args += ["--local-cpus", str(max(1, int(slots * cpus_per_slot)))]
    return launch_worker(directory, *args, subcommand="farm", startup_timeout=600.0)


def run_jobs(endpoint: str, count: int, preset: str, gaussians: int) -> tuple[float, list[float]]:
    from animus3d_shared import protocol as p
    from animus3d_shared.client import WorkerClient
    from helpers_worker import small_splat

    latencies: list[float] = []
    errors: list[str] = []

    def one(i: int) -> None:
        with WorkerClient(endpoint, timeout_s=60.0) as client:
            client.connect()
            start = time.monotonic()
            client.submit(small_splat(gaussians, seed=i), "a blob bounces up and down",
                          settings={"preset": preset, "preview_every": 0}, seed=i)
            final = client.wait_for(lambda m: isinstance(m, (p.Result, p.Error, p.Cancelled)), 24 * 3600.0)
            if isinstance(final, p.Result):
                latencies.append(time.monotonic() - start)
            else:
                errors.append(repr(final))

    start = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"jobs failed: {errors[:3]}")
    return time.monotonic() - start, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slots", type=int, action="append", help="slots to measure (repeatable; default 1 and 2)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--preset", default="test")
    parser.add_argument("--models", help="model configuration file (default: the tiny prior)")
    parser.add_argument("--jobs", type=int, default=8, help="jobs submitted at once per measurement (default 8)")
    parser.add_argument("--warmup", type=int, default=None, help="uncounted jobs first (default: one per slot)")
    parser.add_argument("--gaussians", type=int, default=300)
    parser.add_argument("--cpus-per-slot", type=float, default=1.0)
    args = parser.parse_args()
    rows = []
    for slots in args.slots or [1, 2]:
        with tempfile.TemporaryDirectory(prefix="animus3d-bench-farm-") as folder:
            farm = start_farm(Path(folder), slots, args.device, args.models, args.cpus_per_slot)
            try:
                run_jobs(farm.endpoint, args.warmup if args.warmup is not None else slots, args.preset, args.gaussians)
                wall, latencies = run_jobs(farm.endpoint, args.jobs, args.preset, args.gaussians)
            finally:
                farm.stop(timeout=60.0)
        rows.append({"slots": slots, "jobs": args.jobs, "wall_s": round(wall, 1),
                     "jobs_per_hour": round(args.jobs / wall * 3600, 1),
                     "latency_median_s": round(statistics.median(latencies), 1),
                     "latency_max_s": round(max(latencies), 1)})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nmachine: {platform.node()} ({os.cpu_count()} cores), device {args.device}, preset {args.preset}, "
          f"{args.gaussians} Gaussians, {time.strftime('%Y-%m-%d')}")
    print("| slots | jobs | wall s | jobs/hour | latency median s | latency max s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['slots']} | {r['jobs']} | {r['wall_s']} | {r['jobs_per_hour']} | {r['latency_median_s']} "
              f"| {r['latency_max_s']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
