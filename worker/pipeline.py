"""One animation job, start to end: load priors → static prior → MSD → refinement → Animation.

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

from .events import EtaClock, JobEvents, JobResult, Progress
from .models import ModelConfig
from .priors import load_prior, lora
from .render import make_cameras
from .splat_tensors import SplatTensors
from .stages.guide import guide_motion
from .stages.msd import Conditioning, MotionProblem, optimise_motion, stage_history
from .stages.refine import refine_motion
from .stages.static_prior import fit_static_prior

log = logging.getLogger("animus3d.pipeline")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but this machine has no usable CUDA device")
    return torch.device(device)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def derive_static_prompt(prompt: str) -> str:
    """A static description from a motion prompt: the subject, standing still."""
    words = prompt.strip().rstrip(".").split()
    verbs = {"waves", "wave", "jumps", "jump", "spins", "spin", "turns", "turn", "walks", "walk", "nods", "nod",
             "sways", "sway", "dances", "dance", "runs", "run", "raises", "raise", "tilts", "tilt", "bounces",
             "bounce", "grows", "shrinks", "slides", "rotates", "flies", "swims", "is", "moves", "shakes"}
    for i, word in enumerate(words):
        if word.lower() in verbs and i > 0:
            return " ".join(words[:i]) + ", standing still, static"
    return f"{prompt.strip().rstrip('.')}, not moving, static"


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
    """Evaluates the motion field at ``frames`` evenly spaced times → an Animation (numpy)."""
    with torch.no_grad():
        means = problem.splat.means if indices is None else problem.splat.means[torch.as_tensor(indices, device=problem.splat.means.device)]
        times = torch.linspace(0.0, 1.0, frames, device=means.device)
        dpos, dquat, dlogscale = problem.field(means, times)
    to_np = lambda t: np.ascontiguousarray(t.detach().float().cpu().numpy(), dtype=np.float32)  # noqa: E731
    return Animation(to_np(dpos), to_np(dquat), to_np(dlogscale), fps=float(fps))


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
    models = models or ModelConfig()
    priors = priors or PriorCache()
    static_prompt = static_prompt or derive_static_prompt(prompt)
    dev = resolve_device(device)
    dtype = resolve_dtype(models.dtype, dev)
    timings: dict[str, float] = {}
    clock = EtaClock()
    job_start = time.perf_counter()

    # The LoRA is ε_static of MSD only: no MSD steps, no LoRA to fit (the guide stage uses the base model).
    needs_lora = settings.static_prior == "lora" and settings.score_mode == "msd" and settings.msd_steps > 0
    # Relative cost of one step of each stage (in UNet forwards), for the ETA.
    inv = settings.inversion_steps / settings.inversion_every if settings.noise_mode == "ddim_inversion" else 0.0
    guide_draw_work = 6.0 * settings.guide_denoise_steps  # drawing the guide clip, before its fit's first step
    weights = {"static_prior": 1.5 * settings.lora_batch * settings.lora_steps * needs_lora,  # forward + backward
               "guide": (guide_draw_work + 0.5 * settings.guide_steps) * (settings.guide_steps > 0),
               "msd": (3.0 + inv) * settings.msd_steps,
               "refine": 2.0 * settings.refine_steps}
    total_work = max(sum(weights.values()), 1.0)
    done_work = {"value": 0.0}

    def stage_progress(stage: str, per_step: float, before_steps: float = 0.0):
        """Progress of a stage with ETA; ``before_steps``: work done before its first step reports. A stage
        may report more steps than its setting (the guide fit of two turn hypotheses): its share of the
        work is the setting's, spread over the steps it reports."""
        steps_work = weights[stage] - before_steps  # the work of the stage's steps, however many it reports

        def on(progress: Progress) -> None:
            share = progress.step / progress.total if progress.total else 0.0
            fraction = (done_work["value"] + before_steps + steps_work * share) / total_work
            later_work = total_work - done_work["value"] - weights[stage]
            eta = clock.stage_eta(stage, progress.step, progress.total, steps_work, later_work)
            events.progress(Progress(progress.stage, progress.step, progress.total, progress.losses,
                                     eta_s=clock.eta(fraction) if eta is None else eta, message=progress.message))
        return on

    torch.manual_seed(seed)
    generator = torch.Generator(device="cpu").manual_seed(seed)

    # ---- load -------------------------------------------------------------------------------
    t0 = time.perf_counter()
    events.progress(Progress("load", 0, 1, message=f"loading {models.motion_prior} on {dev}"))
    prior = priors.get(models.motion_prior, dev, dtype)
    settings = fit_resolution_to_prior(settings, prior, events)
    refine_spec = models.refine_prior or models.motion_prior
    tensors = SplatTensors.from_splat(splat, dev)
    lo, hi = tensors.bbox
    cameras = make_cameras(lo, hi, resolution=settings.resolution, orbit_views=settings.orbit_views,
                           elevation_deg=settings.camera_elevation_deg, device=dev)
    cond = encode_conditioning(prior, prompt, static_prompt)
    problem = MotionProblem.build(tensors, cameras, settings)
    timings["load"] = time.perf_counter() - t0
    events.progress(Progress("load", 1, 1))
    events.check_cancelled()

    # ---- stage 1: static prior ------------------------------------------------------------------
    t0 = time.perf_counter()
    lora_losses: list[float] = []
    if needs_lora:
        relay = JobEvents(on_progress=stage_progress("static_prior", 1.5 * settings.lora_batch),
                          cancel_event=events.cancel_event)
        outcome = fit_static_prior(prior, splat, tensors, cameras, settings, static_prompt, relay,
                                   cache_dir=lora_cache_dir or models.lora_cache_dir)
        lora_losses = outcome.losses
        timings["static_prior_cache_hit"] = float(outcome.cache_hit)
    else:
        lora.remove_lora(prior.unet)
    done_work["value"] += weights["static_prior"]
    timings["static_prior"] = time.perf_counter() - t0

    # ---- stage 2: (a guide clip, then) MSD -------------------------------------------------------
    t0 = time.perf_counter()
    preview_index = None
    if splat.count > settings.preview_max_gaussians:
        preview_index = np.sort(np.random.default_rng(seed).choice(splat.count, settings.preview_max_gaussians, replace=False))

    def send_preview(step: int, total: int, stage: str, frames: int) -> None:
        # The first step too, so the artist sees the object under the worker's control at once.
        if settings.preview_every and (step == 1 or step % settings.preview_every == 0 or step == total):
            events.preview(field_animation(problem, frames, settings.fps, preview_index), stage, step,
                           None if preview_index is None else preview_index.astype(np.int32))

    guide_losses: dict[str, list[float]] = {}
    if settings.guide_steps > 0:
        relay = JobEvents(on_progress=stage_progress("guide", 0.5, guide_draw_work),
                          cancel_event=events.cancel_event)
        # The guide draw's DDIM steps replay one CUDA graph of the UNet (captured at its first step).
        with prior.graphed() if settings.cuda_graphs else contextlib.nullcontext():
            guided = guide_motion(prior, problem, cond, settings, relay,
                                  on_step=lambda s, n: send_preview(s, n, "guide", settings.frames),
                                  generator=generator)
        guide_losses = guided.losses
        done_work["value"] += weights["guide"]
        timings["guide"] = time.perf_counter() - t0
        t0 = time.perf_counter()

    # On a GPU the UNet is launch-bound and peft's LoRA branches slow it down: ε_static then comes from
    # a copy of the UNet with the LoRA merged in (plain layers; +1 UNet of memory).
    # The base UNet then needs no LoRA layers at all (the LoRA stays cached on disk), so both UNets
    # are plain, frozen modules whose no-grad forwards replay CUDA graphs.
    static_model = None
    if needs_lora and dev.type == "cuda" and settings.batched_scores:
        static_model = prior.with_unet(lora.merged_copy(prior.unet))
        lora.remove_lora(prior.unet)
    relay = JobEvents(on_progress=stage_progress("msd", 3.0 + inv), cancel_event=events.cancel_event)
    graphs = prior.graphed(*([static_model] if static_model else [])) if settings.cuda_graphs else contextlib.nullcontext()
    with graphs:
        msd = optimise_motion(prior, problem, cond, settings, relay, generator,
                              on_step=lambda s, n: send_preview(s, n, "msd", settings.frames),
                              static_model=static_model)
    del static_model
    done_work["value"] += weights["msd"]
    timings["msd"] = time.perf_counter() - t0

    # ---- stage 3: refinement ----------------------------------------------------------------------
    t0 = time.perf_counter()
    out_frames = settings.frames
    refine_losses: dict[str, list[float]] = {}
    if settings.refine_steps > 0:
        lora.set_lora_enabled(prior.unet, False)
        refiner = priors.get(refine_spec, dev, dtype)
        refine_cond = cond if refiner is prior else encode_conditioning(refiner, prompt, static_prompt)
        out_frames = settings.frames * settings.refine_frame_multiplier
        relay = JobEvents(on_progress=stage_progress("refine", 2.0), cancel_event=events.cancel_event)
        with refiner.graphed() if settings.cuda_graphs else contextlib.nullcontext():
            refined = refine_motion(refiner, problem, refine_cond, settings, relay, generator,
                                    on_step=lambda s, n: send_preview(s, n, "refine", out_frames))
        refine_losses = refined.losses
    timings["refine"] = time.perf_counter() - t0

    # ---- result -----------------------------------------------------------------------------------
    animation = field_animation(problem, out_frames, settings.fps * out_frames / settings.frames)
    lora.remove_lora(prior.unet)  # the cached prior goes back clean for the next job
    timings["total"] = time.perf_counter() - job_start
    history = {"lora": lora_losses} if lora_losses else {}
    history.update(stage_history("guide", guide_losses))
    history.update(msd.losses)
    history.update(stage_history("refine", refine_losses))
    final = {k: v[-1] for k, v in history.items() if v}
    events.progress(Progress("export", 1, 1, losses=final, eta_s=0.0, message="done"))
    log.info("job done prompt=%r frames=%d total_s=%.2f", prompt, out_frames, timings["total"])
    return JobResult(animation=animation, settings=settings.to_dict(), seed=seed, prompt=prompt,
                     static_prompt=static_prompt, device=str(dev), timings=timings, losses=final,
                     loss_history=history)
