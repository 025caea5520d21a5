"""Joining a Ray cluster (or starting a local one) and describing it for `animus3d status`."""

from __future__ import annotations

import math


class ClusterError(RuntimeError):
    pass


def connect(address: str, *, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """``auto``: the cluster this machine belongs to (``ray start``), else a new local one;
    ``local``: always a new local one.

    Any other value is a cluster address (``host:port`` of the head's GCS, or ``ray://...``).
    ``num_cpus``/``num_gpus`` size a local cluster only.
    """
    import ray

    if ray.is_initialized():
        return
    common = dict(namespace="animus3d", include_dashboard=False, log_to_driver=False,
                  configure_logging=False)
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **common)
        elif address == "auto":
            try:
                ray.init(address="auto", **common)
            except ConnectionError:
                ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **common)
        else:
            _require_reachable(address)
            ray.init(address=address, **common)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ClusterError(f"cannot join the Ray cluster at {address!r}: {exc}") from None


def _require_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A plain TCP connect to a ``host:port`` head first: Ray itself waits minutes for a missing one."""
    import socket

    if "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--ray {address!r} is not auto, local or host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray head at {address}: {exc}") from None


def default_slots(device: str, num_cpus: float, num_gpus: float) -> int:
    """As many slots as the cluster has room for: GPUs / gpus-per-slot, else CPUs / cpus-per-slot."""
    import ray

    resources = ray.cluster_resources()
    if device != "cpu" and num_gpus > 0:
        return max(1, math.floor(resources.get("GPU", 0) / num_gpus + 1e-9))
    return max(1, math.floor(resources.get("CPU", 1) / max(num_cpus, 1e-9) + 1e-9))


def describe(slots: int, device: str) -> str:
    """One line for WELCOME/STATUS: nodes, GPUs and CPUs alive, and the farm's slots."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    gpus = sum(n.get("Resources", {}).get("GPU", 0) for n in nodes)
    cpus = sum(n.get("Resources", {}).get("CPU", 0) for n in nodes)
    return (f"ray farm: {len(nodes)} node(s), {gpus:g} GPU(s), {cpus:g} CPU(s); "
            f"{slots} slot(s) on {device}")
