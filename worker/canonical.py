"""A numerically safe frame for any finite splat: optimise in a canonical box, map the motion back.

The pipeline's numeric stages (neighbour search, cameras, field coordinates, rendering) work in
float32. A splat whose coordinates are huge (1e20), tiny (1e-30 apart) or far from the origin
overflows or loses every digit there. ``to_canonical`` moves such a splat into a box centred on the
origin with its largest side 1 (translation and a power-of-two scale, computed in float64); the
animation is mapped back by the same scale (positions) and needs nothing else (rotations and
log-scale deltas do not depend on the frame). A splat that is already well conditioned (largest side
in [1e-2, 1e2], centre within 1e3 sides of the origin) keeps its coordinates exactly.

Whatever the frame, the optimised copy also gets float64-normalised quaternions when their lengths
are extreme and log-scales, SH and opacity logits clamped to ranges where float32 maths stays finite.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from animus3d_shared.deformation import Animation
from animus3d_shared.splat import GaussianSplat

from .events import JobEvents, JobResult

WELL_CONDITIONED_SIDE = (1e-2, 1e2)
MAX_CENTRE_IN_SIDES = 1e3
LOG_SCALE_RANGE = (-30.0, 30.0)
SH_LIMIT = 1e4
OPACITY_LOGIT_LIMIT = 1e4
_F32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass(frozen=True)
class CanonicalFrame:
    """x_canonical = (x - centre) / scale; identity when ``scale`` is 1 and ``centre`` zero."""

    centre: tuple[float, float, float]
    scale: float

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and not any(self.centre)

    def animation_to_world(self, animation: Animation) -> Animation:
        if self.scale == 1.0:
            return animation
        dp = np.clip(animation.delta_position.astype(np.float64) * self.scale, -_F32_MAX, _F32_MAX)
        return dataclasses.replace(animation, delta_position=dp.astype(np.float32))

    def result_to_world(self, result: JobResult) -> JobResult:
        return dataclasses.replace(result, animation=self.animation_to_world(result.animation))

    def events_to_world(self, events: JobEvents) -> JobEvents:
        """Events whose previews are mapped back to the submitted splat's frame."""
        if self.scale == 1.0 or events.on_preview is None:
            return events
        forward = events.on_preview

        def on_preview(animation, stage, step=0, indices=None):
            forward(self.animation_to_world(animation), stage, step, indices)

        return dataclasses.replace(events, on_preview=on_preview)


def canonical_frame(means: np.ndarray) -> CanonicalFrame:
    """The frame ``to_canonical`` uses for these positions (float64 maths, never overflows)."""
    points = means.astype(np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    side = float((high - low).max())
    centre = (low + high) / 2.0
    lo, hi = WELL_CONDITIONED_SIDE
    if lo <= side <= hi and float(np.abs(centre).max()) <= MAX_CENTRE_IN_SIDES * side:
        return CanonicalFrame((0.0, 0.0, 0.0), 1.0)
    scale = 2.0 ** math.ceil(math.log2(side)) if side > 0 else 1.0
    return CanonicalFrame(tuple(float(c) for c in centre), float(scale))


def to_canonical(splat: GaussianSplat) -> tuple[GaussianSplat, CanonicalFrame]:
    """The splat to optimise (float32, safe ranges) and the frame to map its motion back with."""
    frame = canonical_frame(splat.means)
    changes: dict[str, np.ndarray] = {}
    if not frame.identity:
        means = (splat.means.astype(np.float64) - np.array(frame.centre)) / frame.scale
        changes["means"] = means.astype(np.float32)
        changes["log_scales"] = (splat.log_scales.astype(np.float64) - math.log(frame.scale)).astype(np.float32)
    norms = np.linalg.norm(splat.quats.astype(np.float64), axis=1)
    if norms.size and (norms.max() > 1e4 or norms.min() < 1e-4):
        changes["quats"] = (splat.quats.astype(np.float64) / norms[:, None]).astype(np.float32)
    log_scales = changes.get("log_scales", splat.log_scales)
    if log_scales.size and (log_scales.min() < LOG_SCALE_RANGE[0] or log_scales.max() > LOG_SCALE_RANGE[1]):
        changes["log_scales"] = np.clip(log_scales, *LOG_SCALE_RANGE)
    for name, limit in (("sh_dc", SH_LIMIT), ("sh_rest", SH_LIMIT), ("opacity_logits", OPACITY_LOGIT_LIMIT)):
        values = getattr(splat, name)
        if values.size and float(np.abs(values).max()) > limit:
            changes[name] = np.clip(values, -limit, limit)
    return (splat.with_arrays(**changes) if changes else splat), frame
