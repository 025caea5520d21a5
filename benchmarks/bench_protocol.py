"""Benchmark: protocol encode+decode of big messages, in-process and over ZeroMQ tcp loopback.

Run: ``.venv/bin/python benchmarks/bench_protocol.py [--gaussians N] [--frames T] [--repeat R]``.
Prints one table (best of R runs, ms and MB/s of array payload); the issue's target is ≥ 1 GB/s.
Not a timed test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Callable

import numpy as np
import zmq

from animus3d_shared import protocol as p
from animus3d_shared.deformation import Animation
from animus3d_shared.splat import GaussianSplat

TARGET_MB_S = 1000.0


def big_splat(n: int) -> GaussianSplat:
    """A valid SH-degree-3 splat of n Gaussians (random values, deterministic)."""
    rng = np.random.default_rng(0)
    quats = rng.standard_normal((n, 4), np.float32)
    quats[:, 0] += 4.0
    return GaussianSplat(means=rng.standard_normal((n, 3), np.float32), quats=quats,
                         log_scales=rng.standard_normal((n, 3), np.float32) - 4.0,
                         opacity_logits=rng.standard_normal(n, np.float32),
                         sh_dc=rng.standard_normal((n, 3), np.float32),
                         sh_rest=rng.standard_normal((n, 15, 3), np.float32))


def big_animation(frames: int, n: int) -> Animation:
    rng = np.random.default_rng(1)
    rot = rng.standard_normal((frames, n, 4), np.float32) * 0.01
    rot[..., 0] += 1.0
    return Animation(rng.standard_normal((frames, n, 3), np.float32) * 0.01, rot,
                     rng.standard_normal((frames, n, 3), np.float32) * 0.01, 8.0)


def payload_bytes(frames: list) -> int:
    return sum(memoryview(f).nbytes for f in frames)


def best_of(repeat: int, run: Callable[[], object]) -> float:
    """Best wall time in seconds of ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


class Loopback:
    """A PUSH/PULL pair over tcp://127.0.0.1: real sockets, zero-copy send, ``copy=False`` receive.

    Sender and receiver get separate contexts (so separate I/O threads), as two processes would.
    """

    def __init__(self) -> None:
        self.receiver = zmq.Context()
        self.sender = zmq.Context()
        self.pull = self.receiver.socket(zmq.PULL)
        port = self.pull.bind_to_random_port("tcp://127.0.0.1")
        self.push = self.sender.socket(zmq.PUSH)
        self.push.connect(f"tcp://127.0.0.1:{port}")

    def transfer(self, frames: list) -> list:
        """Raw frames there and back into this process: the transport alone, no protocol work."""
        self.push.send_multipart(frames, copy=False)
        return self.pull.recv_multipart(copy=False)

    def round_trip(self, message) -> object:
        """encode → send → receive → decode."""
        return p.decode(self.transfer(p.encode(message)), LIMITS)

    def close(self) -> None:
        self.push.close(0)
        self.pull.close(0)
        self.sender.term()
        self.receiver.term()


LIMITS = p.Limits(max_gaussians=4_000_000)


def measure(name: str, message, repeat: int, loopback: Loopback) -> list[tuple[str, float, float]]:
    """Rows (operation, ms, MB/s of array payload) for one message."""
    frames = p.encode(message)
    size = payload_bytes(frames)
    wire = [bytes(f) for f in frames]
    rows = [(f"**{name}** ({size / 1e6:.0f} MB in {len(frames) - 1} array frames)", float("nan"), float("nan"))]
    for step, run in (
        ("encode (zero-copy)", lambda: p.encode(message)),
        ("decode (validating, zero-copy)", lambda: p.decode(wire, LIMITS)),
        ("encode + decode", lambda: p.decode(p.encode(message), LIMITS)),
        ("zmq tcp loopback: raw frames only", lambda: loopback.transfer(frames)),
        ("zmq tcp loopback: encode + send + recv + decode", lambda: loopback.round_trip(message)),
    ):
        seconds = best_of(repeat, run)
        rows.append((step, seconds * 1e3, size / seconds / 1e6))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=1_000_000)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = args.gaussians
    submit = p.Submit(splat=big_splat(n), prompt="a figure waves", settings={"preset": "draft"})
    result = p.Result(job_id="bench", animation=big_animation(args.frames, n))
    loopback = Loopback()
    try:
        rows = (measure(f"Submit {n:,} Gaussians SH-3", submit, args.repeat, loopback)
                + measure(f"Result {args.frames} frames x {n:,}", result, args.repeat, loopback))
    finally:
        loopback.close()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.python_implementation()} "
          f"{platform.python_version()}, numpy {np.__version__}, pyzmq {zmq.__version__}, best of {args.repeat}")
    print(f"| {'operation':<56} | {'ms':>8} | {'MB/s':>9} | {'× 1 GB/s':>8} |")
    print(f"|{'-' * 58}|{'-' * 9}:|{'-' * 10}:|{'-' * 9}:|")
    for label, ms, mb_s in rows:
        if np.isnan(ms):
            print(f"| {label:<56} | {'':>8} | {'':>9} | {'':>8} |")
        else:
            print(f"| {label:<56} | {ms:>8.2f} | {mb_s:>9.0f} | {mb_s / TARGET_MB_S:>8.2f} |")

if __name__ == "__main__":
    main()
