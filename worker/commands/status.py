"""`animus3d status --connect ADDR [--json]`: a worker's version, device, models and queue."""

from __future__ import annotations

import argparse
import json

from . import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..service.client_options import add_connection_arguments

    add_connection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the status as one JSON object")


def run(args: argparse.Namespace) -> int:
    from animus3d_shared.client import ClientError, WorkerUnreachable
    from animus3d_shared.protocol import Error, StatusReply

    from ..service.client_options import client_from_args
    from ..service.security import SecurityError

    try:
        client = client_from_args(args, client_name="animus3d-status")
    except SecurityError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    try:
        client.connect()
        client.request_status()
        reply = client.wait_for(lambda m: isinstance(m, (StatusReply, Error)), args.timeout)
    except (WorkerUnreachable, TimeoutError):
        raise CommandError(f"worker at {args.connect} did not answer within {args.timeout:g} s") from None
    except ClientError as exc:
        raise CommandError(str(exc)) from None
    finally:
        client.close()
    if isinstance(reply, Error):
        raise CommandError(f"worker refused: {reply.code}: {reply.message}")
    status = status_dict(reply)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(format_status(args.connect, status))
    return 0


def status_dict(reply) -> dict:
    return {
        "worker_version": reply.worker_version,
        "device": reply.device,
        "models": dict(reply.models),
        "running": reply.running,
        "running_jobs": list(reply.running_jobs) or ([reply.running] if reply.running else []),
        "queue": list(reply.queue),
        "kept_results": reply.kept_results,
    }


def format_status(address: str, status: dict) -> str:
    lines = [f"worker   {address}", f"version  {status['worker_version']}", f"device   {status['device']}"]
    for role, spec in status["models"].items():
        lines.append(f"model    {role}: {spec}")
    running_jobs = status.get("running_jobs") or ([status["running"]] if status.get("running") else [])
    for i, running in enumerate(running_jobs):
        lines.append(f"{'running' if i == 0 else '':9}{running['job_id']} {running['stage'] or 'starting'} "
                     f"{running['step']}/{running['total']}  {running['prompt']!r}")
    if not running_jobs:
        lines.append("running  (idle)")
    lines.append(f"queued   {len(status['queue'])}")
    for job in status["queue"]:
        lines.append(f"         {job['job_id']} {job['preset']} {job['gaussians']} Gaussians  {job['prompt']!r}")
    lines.append(f"results  {status['kept_results']} kept")
    return "\n".join(lines)
