"""`animus3d farm`: the worker's ZeroMQ front, its jobs run by Ray actors anywhere in a cluster.

Clients connect exactly as to `animus3d worker` (same protocol, CURVE keys and limits). Each slot is
one Ray actor holding ``--gpus-per-slot`` GPUs (a fraction shares a card) or ``--cpus-per-slot``
CPUs; jobs beyond the slots wait in the front's queue with their position.
"""

from __future__ import annotations

import argparse
import dataclasses

from . import CommandError
from .worker import _float_option, _int_option
from .worker import add_arguments as add_worker_arguments
from .worker import run as run_service


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser)
    parser.add_argument("--ray", default="auto", metavar="ADDRESS",
                        help="Ray cluster address (host:port of the head); auto (default): the cluster this "
                             "machine joined with `ray start`, else a new local one; local: always a new local one")
    parser.add_argument("--slots", type=_int_option(1, 10_000), default=None, metavar="N",
                        help="jobs at once (default: as many as the cluster's GPUs, or CPUs, hold)")
    parser.add_argument("--gpus-per-slot", type=_float_option(0.0, 64.0), default=1.0, metavar="G",
                        help="GPUs one job holds; 0.5 runs two jobs on a card (default 1; ignored on cpu)")
    parser.add_argument("--cpus-per-slot", type=_float_option(0.0, 1024.0), default=1.0, metavar="C",
                        help="CPUs one job holds (default 1)")
    parser.add_argument("--retries", type=_int_option(0, 10), default=0, metavar="N",
                        help="times a job whose actor or node dies is run again before it ends with ERROR "
                             "(default 0)")
    parser.add_argument("--local-cpus", type=_int_option(1, 4096), default=None, metavar="N",
                        help="CPUs of a local cluster started by --ray auto or local (default: all)")


def run(args: argparse.Namespace) -> int:
    from ..farm import cluster
    from ..farm.ray_runner import RaySlotRunner, SlotShape
    from ..farm.service import FarmService
    from ..models import ModelConfig, ModelConfigError
    from ..service.process_runner import ChildSpec

    try:
        models = ModelConfig.load(args.models) if args.models else ModelConfig()
    except (ModelConfigError, ValueError) as exc:
        raise CommandError(str(exc), exit_code=2) from None
    try:
        cluster.connect(args.ray, num_cpus=args.local_cpus)
    except cluster.ClusterError as exc:
        raise CommandError(str(exc), exit_code=1) from None
    import ray

    device = args.device
    if device == "auto":
        device = "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"
    if device not in ("cpu", "cuda"):
        raise CommandError(f"--device {device!r}: a farm runs on cpu or cuda (Ray picks the card)", exit_code=2)
    shape = SlotShape(num_cpus=args.cpus_per_slot, num_gpus=args.gpus_per_slot if device == "cuda" else 0.0)
    slots = args.slots or cluster.default_slots(device, shape.num_cpus, shape.num_gpus)

    def make_service(config):
        spec = ChildSpec(device=device, models=models, max_gaussians=config.max_gaussians)

        def factory(wake):
            return RaySlotRunner(spec, slots, shape, wake, cancel_grace_s=config.cancel_grace_s,
                                 retries=args.retries)

        # The front itself runs no job: its own device is the CPU whatever the actors use.
        return FarmService(dataclasses.replace(config, device="cpu"), factory, slots, device)

    try:
        return run_service(args, make_service=make_service, name="farm")
    finally:
        ray.shutdown()
