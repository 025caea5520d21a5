"""The stage core both methods share: the job's text conditioning, the motion problem (splat, cameras,
field, neighbour graph), view choice, the regularised fit step and loss reporting.

Every stage that moves the field (guide fit, MSD, refinement) builds on these; none of them lives in a
method's own module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from animus3d_shared.settings import JobSettings

from ..events import JobEvents, Progress
from ..motion import MotionField, apply_motion, arap_loss, knn_graph, tv3d_loss
from ..render import Cameras, render
from ..splat_tensors import SplatTensors

ARAP_SAMPLE = 4096  # anchor Gaussians per ARAP evaluation


@dataclass
class Conditioning:
    """The job's text embeddings (motion, negative, static), computed once per job."""

    motion: torch.Tensor  # [1, 77, D]
    negative: torch.Tensor  # [1, 77, D] (empty prompt)
    static: torch.Tensor  # [1, 77, D]


MIN_FITTED = 64  # the fewest Gaussians a subset keeps, however few pixels the setting asks for


def fitted_count(settings: JobSettings) -> int:
    """How many Gaussians the fits render at most (0: all of them)."""
    if settings.fit_gaussians_per_pixel <= 0:
        return 0
    return max(MIN_FITTED, int(round(settings.fit_gaussians_per_pixel * settings.resolution ** 2)))


@dataclass
class MotionProblem:
    """What the optimiser works on: the splat the fits render (all of the job's Gaussians, or at most
    ``fitted_count`` of them), its cameras and the motion field, which spans the whole splat's bounding
    box and moves every Gaussian of ``rest_means``."""

    splat: SplatTensors
    cameras: Cameras
    field: MotionField
    graph: object  # knn graph of the fitted Gaussians' rest positions
    frames: int
    rest_means: torch.Tensor  # [N, 3] every Gaussian of the job, where the result evaluates the field

    @classmethod
    def build(cls, splat: SplatTensors, cameras: Cameras, settings: JobSettings, seed: int = 0) -> "MotionProblem":
        lo, hi = splat.bbox
        motion_field = MotionField(lo, hi, resolution=settings.field_resolution, levels=settings.field_levels,
                                   time_resolution=max(4, settings.frames),
                                   global_motion=settings.global_motion).to(splat.means.device)
        fitted = splat.subset(fitted_count(settings), seed)
        graph = knn_graph(fitted.means, k=min(settings.arap_neighbours, max(1, fitted.count - 1)))
        return cls(fitted, cameras, motion_field, graph, settings.frames, splat.means)

    def optimiser(self, lr: float, global_lr: float) -> torch.optim.Optimizer:
        """Adam over the field: the local field at ``lr``, the global motion (if any) at ``global_lr``."""
        groups = [{"params": self.field.local_parameters(), "lr": lr}]
        if self.field.global_motion is not None:
            groups.append({"params": list(self.field.global_motion.parameters()), "lr": global_lr})
        return torch.optim.Adam(groups, lr=lr)

    def deform(self, frames: int):
        times = torch.linspace(0.0, 1.0, frames, device=self.splat.means.device)
        dpos, dquat, dlogscale = self.field(self.splat.means, times)
        means, quats, log_scales = apply_motion(self.splat.means, self.splat.quats, self.splat.log_scales,
                                                dpos, dquat, dlogscale)
        return (dpos, dquat, dlogscale), (means, quats, log_scales)

    def cameras_for(self, view_ids) -> Cameras:
        """The cameras for a tuple of view indices, selected once and kept on the device (selecting
        each step would copy indices from the host and sync the stream)."""
        key = tuple(int(i) for i in view_ids)
        cache = self.__dict__.setdefault("_camera_cache", {})
        if key not in cache:
            cache[key] = self.cameras.select(list(key))
        return cache[key]

    def render_clips(self, means, quats, log_scales, view_ids) -> torch.Tensor:
        """Renders every frame from the chosen cameras → clips [V, T, 3, H, W]."""
        images, _ = render(means, quats, torch.exp(log_scales), self.splat.opacities, self.splat.colors,
                           self.cameras_for(view_ids))
        return images.permute(1, 0, 4, 2, 3)  # [T, V, H, W, 3] -> [V, T, 3, H, W]

    def regularisers(self, deltas, means, settings: JobSettings, generator: torch.Generator) -> dict[str, torch.Tensor]:
        dpos, dquat, dlogscale = deltas
        terms: dict[str, torch.Tensor] = {}
        if settings.arap_weight > 0:
            terms["arap"] = arap_loss(self.splat.means, means, self.graph,
                                      sample=ARAP_SAMPLE if self.splat.count > ARAP_SAMPLE else None,
                                      uniform_scale=settings.arap_uniform_scale)
        if settings.tv_weight > 0:
            terms["tv"] = tv3d_loss(dpos, dquat, dlogscale)
        if settings.global_rest_weight > 0 and self.field.global_motion is not None:
            terms["global_rest"] = self.field.global_motion.departure_from_rest()
        return terms


def weighted_total(main: str, terms: dict[str, torch.Tensor], settings: JobSettings) -> torch.Tensor:
    """The stage's own loss ``terms[main]`` plus the weighted regularisers."""
    return (terms[main] + settings.arap_weight * terms.get("arap", 0.0) + settings.tv_weight * terms.get("tv", 0.0)
            + settings.global_rest_weight * terms.get("global_rest", 0.0))


def report_losses(stage: str, step: int, total: int, terms: dict[str, torch.Tensor], history: dict[str, list[float]],
                  events: JobEvents, extra: dict[str, float] | None = None) -> None:
    """Reads the loss terms back (one host sync), appends them to ``history`` and reports progress."""
    values = {k: float(v.detach()) for k, v in terms.items()}
    values.update(extra or {})
    for k, v in values.items():
        history.setdefault(k, []).append(v)
    events.progress(Progress(stage, step + 1, total, losses=values))


def fit_step(stage: str, step: int, total: int, terms: dict[str, torch.Tensor], settings: JobSettings,
             optimiser: torch.optim.Optimizer, history: dict[str, list[float]], events: JobEvents,
             on_step=None) -> None:
    """One step of a stage that fits the field to a target (guide, refinement): ``terms`` holds the
    stage's own loss under ``stage`` and the regularisers; reports about 100 times over ``total``."""
    loss = weighted_total(stage, terms, settings)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    if step % max(1, total // 100) == 0 or step == total - 1:
        report_losses(stage, step, total, terms, history, events)
    if on_step is not None:
        on_step(step + 1, total)


def stage_history(stage: str, losses: dict[str, list[float]]) -> dict[str, list[float]]:
    """A later stage's loss history with its regularisers renamed ``<stage>_arap`` etc., so they do
    not overwrite MSD's under the same names."""
    return {name if name == stage else f"{stage}_{name}": values for name, values in losses.items()}


def choose_views(step: int, cameras: Cameras, settings: JobSettings, generator: torch.Generator) -> torch.Tensor:
    """The front view every other step, random orbit views otherwise (or only the front view)."""
    count = int(cameras.viewmats.shape[0])
    k = min(settings.views_per_step, count)
    if count == 1 or step % 2 == 0:
        rest = torch.randperm(count - 1, generator=generator)[: k - 1] + 1 if k > 1 else torch.empty(0, dtype=torch.long)
        return torch.cat([torch.zeros(1, dtype=torch.long), rest])
    return torch.randperm(count - 1, generator=generator)[:k] + 1
