"""A motion problem over a splat for stage tests: its tensors, cameras and motion field on the CPU.

    from helpers_problem import motion_problem
    problem, settings = motion_problem(make_test_blob(seed=3, count=800), orbit_views=2, guide_steps=60)
"""

from __future__ import annotations

from animus3d_shared.settings import JobSettings
from animus3d_worker.render import make_cameras
from animus3d_worker.splat_tensors import SplatTensors
from animus3d_worker.stages.core import MotionProblem


def motion_problem(splat, *, orbit_views: int, resolution: int = 32, **overrides):
    """(MotionProblem, JobSettings) of ``splat`` with cameras at ``resolution`` and the `test` preset's
    settings with ``overrides``."""
    settings = JobSettings.from_preset("test", **overrides)
    tensors = SplatTensors.from_splat(splat, "cpu")
    lo, hi = tensors.bbox
    cameras = make_cameras(lo, hi, resolution=resolution, orbit_views=orbit_views, device="cpu")
    return MotionProblem.build(tensors, cameras, settings), settings
