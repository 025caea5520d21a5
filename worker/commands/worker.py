"""`animus3d worker`: run the ZeroMQ worker service until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import signal
import sys
from pathlib import Path

from . import CommandError
from ..service.config import DEFAULT_BIND, MAX_GAUSSIANS_LIMIT, ServiceConfig


def _int_option(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value
    return parse


def _float_option(low: float, high: float):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not a finite number in {low:g}..{high:g}")
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", default=DEFAULT_BIND,
                        help=f"ZeroMQ endpoint to listen on (default {DEFAULT_BIND}; a port of * picks a free one). "
                             "Non-loopback addresses need --keys")
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (default)")
    parser.add_argument("--models", metavar="CONFIG", help="model configuration file (TOML or JSON)")
    parser.add_argument("--keys", metavar="DIR", help="CURVE key directory made by `animus3d keygen`")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="where the job store (jobs.sqlite) lives; default: one per bind address under "
                             "$XDG_STATE_HOME/animus3d (or ~/.local/state/animus3d)")
    parser.add_argument("--max-gaussians", type=_int_option(1, MAX_GAUSSIANS_LIMIT), default=2_000_000, metavar="N")
    parser.add_argument("--max-queued-per-client", type=_int_option(1, 10_000), default=4, metavar="N",
                        help="unfinished jobs one identity may have (default 4)")
    parser.add_argument("--max-queued", type=_int_option(1, 100_000), default=64, metavar="N",
                        help="unfinished jobs of all clients together (default 64)")
    parser.add_argument("--result-ttl", type=_float_option(1e-3, 1e9), default=3600.0, metavar="S",
                        help="seconds a finished job's result is kept for ATTACH (default 3600)")
    parser.add_argument("--max-result-bytes", type=_int_option(0, 1 << 50), default=4 << 30, metavar="B",
                        help="bytes of kept results, all jobs together; the oldest go first (default 4 GiB)")
    parser.add_argument("--max-job-seconds", type=_float_option(1e-3, 1e9), default=6 * 3600.0, metavar="S",
                        help="wall-clock cap of one job (default 21600)")
    parser.add_argument("--max-job-cost", type=_float_option(0.0, 1e15), default=200_000.0, metavar="C",
                        help="refuse jobs whose estimated cost is above this (default 200000; `paper` is ~70000)")
    parser.add_argument("--admin-key", action="append", default=[], metavar="FILE",
                        help="a client public key (.key) whose holder sees and may cancel every job (repeatable)")
    parser.add_argument("--admin-token-file", metavar="FILE",
                        help="a file holding a client token whose holder sees and may cancel every job")
    parser.add_argument("--preview-every", type=_int_option(0, 100_000), default=None, metavar="N",
                        help="send a PREVIEW every N steps unless a job says otherwise")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def default_state_dir(bind: str) -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "animus3d"
    return base / ("worker-" + hashlib.sha256(bind.encode()).hexdigest()[:12])


def admin_identities(args: argparse.Namespace) -> frozenset[str]:
    from ..service.security import SecurityError, load_public_key
    from ..service.server import key_identity, token_identity

    identities = set()
    for key_file in args.admin_key:
        identities.add(key_identity(load_public_key(key_file).decode("ascii")))
    if args.admin_token_file:
        try:
            token = Path(args.admin_token_file).read_text().strip()
        except OSError as exc:
            raise SecurityError(f"cannot read --admin-token-file: {exc}") from None
        if not 16 <= len(token) <= 128:
            raise SecurityError("the admin token must be 16 to 128 characters")
        identities.add(token_identity(token))
    return frozenset(identities)


def run(args: argparse.Namespace, make_service=None, name: str = "worker") -> int:
    """Runs the service; ``make_service(config)`` builds it (the farm's placement), else a WorkerService."""
    import logging

    from ..models import ModelConfig, ModelConfigError
    from ..service.logs import configure_logging
    from ..service.security import SecurityError
    from ..service.server import WorkerService
    from ..service.store import StoreError

    configure_logging(getattr(logging, args.log_level))
    try:
        models = ModelConfig.load(args.models) if args.models else ModelConfig()
        config = ServiceConfig(bind=args.bind, device=args.device, models=models,
                               keys_dir=Path(args.keys) if args.keys else None,
                               state_dir=Path(args.state_dir) if args.state_dir else default_state_dir(args.bind),
                               max_gaussians=args.max_gaussians, max_queued_per_client=args.max_queued_per_client,
                               max_queued_total=args.max_queued, result_ttl_s=args.result_ttl,
                               max_result_bytes=args.max_result_bytes, max_job_seconds=args.max_job_seconds,
                               max_job_cost=args.max_job_cost, admin_identities=admin_identities(args),
                               preview_every=args.preview_every)
        service = make_service(config) if make_service is not None else WorkerService(config)
    except SecurityError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    except (ModelConfigError, ValueError, RuntimeError, StoreError) as exc:
        raise CommandError(str(exc), exit_code=2) from None
    try:
        endpoint = service.bind()
    except OSError as exc:
        raise CommandError(str(exc), exit_code=1) from None

    def stop(signum, frame):  # noqa: ARG001
        service.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"animus3d {name} listening on {endpoint} (device {service.device_description})", flush=True)
    service.serve()
    print(f"animus3d {name} stopped", file=sys.stderr, flush=True)
    return 0
