"""Section timing for benchmarks: wall time per named section, CUDA-synchronised when enabled.

The pipeline takes an optional ``SectionTimer``; without one (the normal case) sections cost a
``nullcontext`` and no device sync, so timing never slows a real job.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

import torch


class SectionTimer:
    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.totals: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def __call__(self, name: str):
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.totals[name] += time.perf_counter() - start
            self.counts[name] += 1

    def reset(self) -> None:
        self.totals.clear()
        self.counts.clear()

    def mean_ms(self, name: str) -> float:
        return 1000.0 * self.totals[name] / max(1, self.counts[name])


def section(timer: SectionTimer | None, name: str):
    return timer(name) if timer is not None else contextlib.nullcontext()
