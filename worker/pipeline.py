"""One animation job, start to end: load → the plan's stages → Animation.

The plan (``stages/plan.py``) names the stages a job's settings run: the shipped method is
guide → refine, the paper's static_prior → msd → refine.

Used by the worker service (one job at a time per device) and by ``animus3d animate --local``.
The pipeline knows nothing about sockets; it reports through ``JobEvents``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

import numpy as np
import torch

from animus3d_shared.deformation import Animation
from animus3d_shared.settings import JobSettings
from animus3d_shared.splat import GaussianSplat

from animus3d_shared.prompts import derive_static_prompt

from . import understanding
from .canonical import to_canonical
from .devices import resolve_device, resolve_dtype
from .events import EtaClock, JobEvents, JobResult, Progress
from .models import ModelConfig
from .priors import load_prior, lora
from .render import make_cameras
from .splat_tensors import SplatTensors
from .stages.core import Conditioning, MotionProblem, stage_history
from .stages.guide import guide_motion
from .stages.msd import optimise_motion
from .stages.plan import guide_draw_work, stage_plan, stage_work
from .stages.refine import refine_motion
from .stages.static_prior import fit_static_prior

__all__ = ["PriorCache", "derive_static_prompt", "encode_conditioning", "field_animation", "resolve_device",
           "resolve_dtype", "run_job"]

log = logging.getLogger("animus3d.pipeline")


def fit_resolution_to_prior(settings: JobSettings, prior, events: JobEvents) -> JobSettings:
    """Renders no larger than a prior that declares its training resolution (the embedded prior: 64):
    a UNet shown latents 4× the size it learnt gives noise, not motion."""
    native = getattr(prior, "native_resolution", None)
    if not native or settings.resolution <= native:
        return settings
    events.progress(Progress("load", 0, 1, message=f"the prior was trained on {native}×{native} frames: "
                                                   f"rendering at {native} instead of {settings.resolution}"))
    return settings.replace(resolution=native)


class PriorCache:
    """Keeps loaded priors across jobs (loading a 1.7B model takes longer than a draft job)."""

    def __init__(self) -> None:
        self._priors: dict[tuple[str, str, str], object] = {}
        self._lock = threading.Lock()

    def get(self, spec: str, device: torch.device, dtype: torch.dtype):
        key = (spec, str(device), str(dtype))
        with self._lock:
            if key not in self._priors:
                self._priors[key] = load_prior(spec, device=device, dtype=dtype)
            return self._priors[key]

    def put(self, spec: str, device: torch.device, dtype: torch.dtype, prior) -> None:
        """Holds an already loaded ``prior`` under ``spec`` (benchmarks hand in a prior built in memory)."""
        with self._lock:
            self._priors[(spec, str(device), str(dtype))] = prior

    def clear(self) -> None:
        with self._lock:
            self._priors.clear()


def encode_conditioning(prior, prompt: str, static_prompt: str) -> Conditioning:
    """The MSD text embeddings of a job: motion prompt, empty prompt (CFG) and static prompt."""
    return Conditioning(motion=prior.encode_text([prompt]), negative=prior.encode_text([""]),
                        static=prior.encode_text([static_prompt]))


def field_animation(problem: MotionProblem, frames: int, fps: float, indices: np.ndarray | None = None) -> Animation:
    """Evaluates the motion field on every Gaussian of the job (or those of ``indices``) at ``frames``
    evenly spaced times → an Animation (numpy)."""
    with torch.no_grad():
        means = problem.rest_means
        if indices is not None:
            means = means[torch.as_tensor(indices, device=means.device)]
        times = torch.linspace(0.0, 1.0, frames, device=means.device)
        dpos, dquat, dlogscale = problem.field(means, times)
    to_np = lambda t: np.ascontiguousarray(t.detach().float().cpu().numpy(), dtype=np.float32)  # noqa: E731
    return Animation(to_np(dpos), to_np(dquat), to_np(dlogscale), fps=float(fps))


class _JobRun:
    """The state one job's stages share: device, prior, problem, conditioning, progress and previews."""

    def __init__(self, splat: GaussianSplat, prompt: str, static_prompt: str, settings: JobSettings, seed: int,
                 dev: torch.device, dtype: torch.dtype, models: ModelConfig, events: JobEvents, priors: PriorCache,
                 lora_cache_dir) -> None:
        self.splat, self.prompt, self.static_prompt, self.seed = splat, prompt, static_prompt, seed
        self.motion_prompt = prompt  # what the motion prior is conditioned on (``load`` may read the prompt)
        self.dev, self.dtype, self.models, self.events, self.priors = dev, dtype, models, events, priors
        self.lora_cache_dir = lora_cache_dir
        self.lora_view = None  # the static prior stage's LoRA copy of the prior, until MSD has used it
        self.settings = settings
        self.timings: dict[str, float] = {}
        self.history: dict[str, list[float]] = {}
        self.clock = EtaClock()
        self.done_work = 0.0
        self.out_frames = settings.frames
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    # ---- progress and previews ---------------------------------------------------------------
    def plan(self, plan: list[str]) -> None:
        self.work = stage_work(self.settings, plan)
        self.total_work = max(sum(self.work.values()), 1.0)

    def relay(self, stage: str, before_steps: float = 0.0) -> JobEvents:
        """Progress of a stage with ETA; ``before_steps``: work done before its first step reports. A stage
        may report more steps than its setting (the guide fit of two turn hypotheses): its share of the
        work is the setting's, spread over the steps it reports."""
        steps_work = self.work[stage] - before_steps  # the work of the stage's steps, however many it reports

        def on(progress: Progress) -> None:
            share = progress.step / progress.total if progress.total else 0.0
            fraction = (self.done_work + before_steps + steps_work * share) / self.total_work
            later_work = self.total_work - self.done_work - self.work[stage]
            eta = self.clock.stage_eta(stage, progress.step, progress.total, steps_work, later_work)
            self.events.progress(Progress(progress.stage, progress.step, progress.total, progress.losses,
                                          eta_s=self.clock.eta(fraction) if eta is None else eta,
                                          message=progress.message))
        return JobEvents(on_progress=on, cancel_event=self.events.cancel_event)

    def finish(self, stage: str, t0: float) -> None:
        self.done_work += self.work[stage]
        self.timings[stage] = time.perf_counter() - t0

    def preview(self, stage: str, frames: int):
        settings = self.settings

        def on_step(step: int, total: int) -> None:
            # The first step too, so the artist sees the object under the worker's control at once.
            if settings.preview_every and (step == 1 or step % settings.preview_every == 0 or step == total):
                self.events.preview(field_animation(self.problem, frames, settings.fps, self.preview_index), stage,
                                    step, None if self.preview_index is None else self.preview_index.astype(np.int32))
        return on_step

    # ---- stages --------------------------------------------------------------------------------
    def load(self) -> None:
        t0 = time.perf_counter()
        self.events.progress(Progress("load", 0, 1, message=f"loading {self.models.motion_prior} on {self.dev}"))
        self.prior = self.priors.get(self.models.motion_prior, self.dev, self.dtype)
        self.settings = settings = fit_resolution_to_prior(self.settings, self.prior, self.events)
        self.understood, self.warnings = understanding.prompt_report(self.prompt, self.prior, settings.read_prompt)
        for notice in self.warnings:
            self.events.progress(Progress("load", 0, 1, message=notice))
        reading = self.understood.reading if self.understood is not None and settings.read_prompt else None
        if reading is not None:
            self.motion_prompt = reading
            self.events.progress(Progress("load", 0, 1, message=f"read as: {reading!r}"))
        # A prompt read as standing still leaves the object as it is: no clip to draw, no field to fit,
        # so no conditioning, cameras or motion problem either.
        self.stays_still = reading is not None and self.understood.stays_still
        self.preview_index = None
        if self.stays_still:
            self.events.progress(Progress("load", 0, 1, message=f"read as standing still ({reading!r}): the object "
                                          f"is left unmoved (--set read_prompt=false animates the words as typed)"))
        else:
            tensors = SplatTensors.from_splat(self.splat, self.dev)
            lo, hi = tensors.bbox
            cameras = make_cameras(lo, hi, resolution=settings.resolution, orbit_views=settings.orbit_views,
                                   elevation_deg=settings.camera_elevation_deg, device=self.dev)
            self.cond = encode_conditioning(self.prior, self.motion_prompt, self.static_prompt)
            self.problem = MotionProblem.build(tensors, cameras, settings, self.seed)
            if self.splat.count > settings.preview_max_gaussians:
                self.preview_index = np.sort(np.random.default_rng(self.seed).choice(
                    self.splat.count, settings.preview_max_gaussians, replace=False))
        self.timings["load"] = time.perf_counter() - t0
        self.events.progress(Progress("load", 1, 1))
        self.events.check_cancelled()

    def guide(self) -> None:
        t0 = time.perf_counter()
        settings = self.settings
        side = self.understood.own_side if self.understood is not None else None  # "its left arm"
        heading = self.understood.heading if self.understood is not None else None  # "to the left"
        # The guide draw's DDIM steps replay one CUDA graph of the UNet (captured at its first step).
        with self.prior.graphed() if settings.cuda_graphs else contextlib.nullcontext():
            guided = guide_motion(self.prior, self.problem, self.cond, settings,
                                  self.relay("guide", guide_draw_work(settings)),
                                  on_step=self.preview("guide", settings.frames), generator=self.generator,
                                  side=side, heading=heading)
        self.history.update(stage_history("guide", guided.losses))
        self.finish("guide", t0)

    def static_prior(self) -> None:
        """Fits (or loads) the LoRA of ε_static on a job-local copy of the prior's UNet (the cached prior
        is never changed; MSD reads the copy and drops it)."""
        t0 = time.perf_counter()
        self.lora_view = self.prior.with_unet(lora.shared_weight_copy(self.prior.unet))
        outcome = fit_static_prior(self.lora_view, self.splat, self.problem.splat, self.problem.cameras, self.settings,
                                   self.static_prompt, self.relay("static_prior"),
                                   cache_dir=self.lora_cache_dir or self.models.lora_cache_dir)
        if outcome.losses:
            self.history["lora"] = outcome.losses
        self.timings["static_prior_cache_hit"] = float(outcome.cache_hit)
        self.finish("static_prior", t0)

    def msd(self) -> None:
        t0 = time.perf_counter()
        settings = self.settings
        # With a static prior, ε_static comes from the job's LoRA copy (adapters on) and ε_motion from the
        # same copy with its adapters off. On a GPU the UNet is launch-bound and peft's LoRA branches slow
        # it down: ε_static then comes from the copy with the LoRA merged in and ε_motion from the cached
        # prior, both plain, frozen modules whose no-grad forwards replay CUDA graphs.
        prior = self.lora_view if self.lora_view is not None else self.prior
        static_model = None
        if self.lora_view is not None and self.dev.type == "cuda" and settings.batched_scores:
            prior, static_model = self.prior, self.lora_view.with_unet(lora.merged_copy(self.lora_view.unet))
        self.lora_view = None  # the LoRA is MSD's alone
        graphs = prior.graphed(*([static_model] if static_model else [])) if settings.cuda_graphs else contextlib.nullcontext()
        with graphs:
            msd = optimise_motion(prior, self.problem, self.cond, settings, self.relay("msd"), self.generator,
                                  on_step=self.preview("msd", settings.frames), static_model=static_model)
        del static_model, prior
        self.history.update(msd.losses)
        self.finish("msd", t0)

    def refine(self) -> None:
        t0 = time.perf_counter()
        settings = self.settings
        refiner = self.priors.get(self.models.refine_prior or self.models.motion_prior, self.dev, self.dtype)
        cond = self.cond if refiner is self.prior else encode_conditioning(refiner, self.motion_prompt,
                                                                            self.static_prompt)
        self.out_frames = settings.clip_frames
        with refiner.graphed() if settings.cuda_graphs else contextlib.nullcontext():
            refined = refine_motion(refiner, self.problem, cond, settings, self.relay("refine"), self.generator,
                                    on_step=self.preview("refine", self.out_frames))
        self.history.update(stage_history("refine", refined.losses))
        self.finish("refine", t0)


def run_job(
    splat: GaussianSplat,
    prompt: str,
    settings: JobSettings,
    *,
    static_prompt: str | None = None,
    seed: int = 0,
    device: str = "auto",
    models: ModelConfig | None = None,
    events: JobEvents | None = None,
    priors: PriorCache | None = None,
    lora_cache_dir: str | Path | None = None,
) -> JobResult:
    """Animates ``splat`` from ``prompt``. Deterministic for a given seed and device."""
    events = events or JobEvents()
    splat, frame = to_canonical(splat)  # any finite splat optimises in a safe float32 range
    events = frame.events_to_world(events)
    models = models or ModelConfig()
    static_prompt = static_prompt or derive_static_prompt(prompt)
    dev = resolve_device(device)
    job_start = time.perf_counter()
    torch.manual_seed(seed)
    job = _JobRun(splat, prompt, static_prompt, settings, seed, dev, resolve_dtype(models.dtype, dev), models, events,
                  priors or PriorCache(), lora_cache_dir)

    job.load()
    plan = [] if job.stays_still else stage_plan(job.settings)
    job.plan(plan)
    if "static_prior" in plan:
        job.static_prior()
    if "guide" in plan:
        job.guide()
    if "msd" in plan:
        job.msd()
    if "refine" in plan:
        job.refine()

    settings = job.settings
    if job.stays_still:
        job.out_frames = settings.clip_frames
        animation = Animation.identity(job.out_frames, splat.count, settings.fps * job.out_frames / settings.frames)
    else:
        animation = field_animation(job.problem, job.out_frames, settings.fps * job.out_frames / settings.frames)
    animation = frame.animation_to_world(animation)
    job.timings["total"] = time.perf_counter() - job_start
    final = {k: v[-1] for k, v in job.history.items() if v}
    events.progress(Progress("export", 1, 1, losses=final, eta_s=0.0, message="done"))
    log.info("job done prompt=%r frames=%d total_s=%.2f", prompt, job.out_frames, job.timings["total"])
    late_warning = understanding.result_warning(job.understood, splat, animation)
    return JobResult(animation=animation, settings=settings.to_dict(), seed=seed, prompt=prompt,
                     static_prompt=static_prompt, motion_prompt=job.motion_prompt, device=str(dev),
                     timings=job.timings, losses=final, loss_history=job.history,
                     warnings=job.warnings + ([late_warning] if late_warning else []))
