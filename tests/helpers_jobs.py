"""Job functions for a ProcessRunner child in tests (``ChildSpec.target``): misbehaving jobs."""

from __future__ import annotations

import time


def ignore_cancel(submit, events, spec, state):
    """A job that never checks for cancellation (like a stage stuck in a native loop)."""
    events.progress(_progress())
    while True:
        time.sleep(0.05)


def _progress():
    from animus3d_worker.events import Progress

    return Progress("msd", 0, 1)
