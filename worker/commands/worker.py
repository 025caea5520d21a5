"""`animus3d worker`: run the ZeroMQ worker service until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import CommandError
from ..service.config import DEFAULT_BIND, ServiceConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", default=DEFAULT_BIND,
                        help=f"ZeroMQ endpoint to listen on (default {DEFAULT_BIND}; a port of * picks a free one). "
                             "Non-loopback addresses need --keys")
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (default)")
    parser.add_argument("--models", metavar="CONFIG", help="model configuration file (TOML or JSON)")
    parser.add_argument("--keys", metavar="DIR", help="CURVE key directory made by `animus3d keygen`")
    parser.add_argument("--max-gaussians", type=int, default=2_000_000, metavar="N")
    parser.add_argument("--max-queued-per-client", type=int, default=4, metavar="N")
    parser.add_argument("--result-ttl", type=float, default=3600.0, metavar="S",
                        help="seconds a finished job's result is kept for ATTACH (default 3600)")
    parser.add_argument("--preview-every", type=int, default=None, metavar="N",
                        help="send a PREVIEW every N steps unless a job says otherwise")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def run(args: argparse.Namespace) -> int:
    import logging

    from ..models import ModelConfig, ModelConfigError
    from ..service.logs import configure_logging
    from ..service.security import SecurityError
    from ..service.server import WorkerService

    configure_logging(getattr(logging, args.log_level))
    try:
        models = ModelConfig.load(args.models) if args.models else ModelConfig()
        config = ServiceConfig(bind=args.bind, device=args.device, models=models,
                               keys_dir=Path(args.keys) if args.keys else None,
                               max_gaussians=args.max_gaussians, max_queued_per_client=args.max_queued_per_client,
                               result_ttl_s=args.result_ttl, preview_every=args.preview_every)
        service = WorkerService(config)
    except SecurityError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    except (ModelConfigError, ValueError, RuntimeError) as exc:
        raise CommandError(str(exc), exit_code=2) from None
    try:
        endpoint = service.bind()
    except OSError as exc:
        raise CommandError(str(exc), exit_code=1) from None

    def stop(signum, frame):  # noqa: ARG001
        service.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"animus3d worker listening on {endpoint} (device {service.device_description})", flush=True)
    service.serve()
    print("animus3d worker stopped", file=sys.stderr, flush=True)
    return 0
