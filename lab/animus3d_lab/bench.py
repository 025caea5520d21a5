"""`animus3d bench`: per-stage cost of the real pipeline code at real model sizes.

No weights can be downloaded here, so the priors are the real architectures with random weights:
a ModelScope-size UNet3DConditionModel (diffusers' default config, 1.41 B parameters), the SD
AutoencoderKL, and a CLIP text encoder of ModelScope's width (2 layers: text is encoded once per job,
off the hot path). ZeroScope v2 (576w and XL) share ModelScope's UNet architecture, so the same UNet
stands in for the refinement prior, run on the refined (2×) clip. The splat is the procedural
character with 200k Gaussians; frames and resolution come from the preset.

Each measurement runs the pipeline's own stage functions (fit_static_prior, optimise_motion,
refine_motion) for a few steps after a warm-up, with a CUDA-synchronised section timer, and reports
ms per step. The *reference* configuration runs the same code the way a direct implementation of
the paper would: fp32, one UNet forward per prediction, a full DDIM inversion every step.
"""

from __future__ import annotations

import contextlib
import json
import dataclasses
import tempfile
import time
from dataclasses import dataclass

import torch

from animus3d_shared.settings import PRESETS, JobSettings

from animus3d_worker.events import JobEvents
from animus3d_worker.models import ModelConfig
from animus3d_worker.timing import SectionTimer

MSD_SECTIONS = ("field", "render", "encode", "inversion", "guidance", "regularisers", "backward")


@dataclass
class BenchConfig:
    name: str
    dtype: torch.dtype
    overrides: dict


def build_full_size_prior(device: torch.device, dtype: torch.dtype, text_layers: int = 2):
    """ModelScope-size components with random weights, built directly on ``device``."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from animus3d_worker.priors.base import VideoPrior
    from animus3d_worker.priors.tiny import MODELSCOPE_SCHEDULER
    from animus3d_worker.priors.tokenizer import build_clip_tokenizer

    torch.manual_seed(0)
    tokenizer = build_clip_tokenizer(tempfile.mkdtemp(prefix="animus3d-bench-tok-"))
    with torch.device(device):
        unet = UNet3DConditionModel()  # the default config is ModelScope text-to-video-ms-1.7b's UNet
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
            sample_size=512, scaling_factor=0.18215,
        )
        text = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=1024, intermediate_size=4096, num_hidden_layers=text_layers,
            num_attention_heads=16, max_position_embeddings=77, projection_dim=1024,
        ))
    scheduler = DDIMScheduler(**MODELSCOPE_SCHEDULER)
    return VideoPrior("modelscope-size-random", unet, vae, text, tokenizer, scheduler, device=device, dtype=dtype)


def _peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)


@contextlib.contextmanager
def _prior_dtype(prior, dtype: torch.dtype):
    """Runs ``prior`` at ``dtype`` for the block (the reference runs the same weights in fp32)."""
    before = prior.dtype
    if dtype != before:
        for module in (prior.unet, prior.vae, prior.text_encoder):
            module.to(dtype=dtype)
        prior.dtype = dtype
        prior._text_cache.clear()
    try:
        yield prior
    finally:
        if dtype != before:
            for module in (prior.unet, prior.vae, prior.text_encoder):
                module.to(dtype=before)
            prior.dtype = before
            prior._text_cache.clear()


def measure(prior, splat, settings: JobSettings, device: torch.device, *, lora_steps: int, msd_steps: int,
            refine_steps: int, warmup: int = 2) -> dict:
    """ms per step of each stage with ``settings``, running the stages' own code."""
    from animus3d_worker.pipeline import encode_conditioning, derive_static_prompt
    from animus3d_worker.priors import lora
    from animus3d_worker.render import make_cameras
    from animus3d_worker.splat_tensors import SplatTensors
    from animus3d_worker.stages.msd import MotionProblem, optimise_motion
    from animus3d_worker.stages.refine import refine_motion
    from animus3d_worker.stages.static_prior import fit_static_prior

    prompt = "the character waves its right arm"
    static_prompt = derive_static_prompt(prompt)
    tensors = SplatTensors.from_splat(splat, device)
    lo, hi = tensors.bbox
    cams = make_cameras(lo, hi, resolution=settings.resolution, orbit_views=settings.orbit_views,
                        elevation_deg=settings.camera_elevation_deg, device=device)
    cond = encode_conditioning(prior, prompt, static_prompt)
    generator = torch.Generator().manual_seed(0)
    out: dict = {}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    # Stage 1: LoRA steps (fresh cache dir, so it really trains).
    lora.remove_lora(prior.unet)
    _reset_peak(device)
    with tempfile.TemporaryDirectory() as cache:
        s = settings.replace(lora_steps=warmup)
        fit_static_prior(prior, splat, tensors, cams, s, static_prompt, JobEvents(), cache_dir=cache)
        sync()
        # Each progress event reads the step's loss back (a sync), so its time marks the step's end.
        # Step 1 includes the CUDA-graph capture of the training step; the rest are steady state.
        marks: list[float] = []
        start = time.perf_counter()
        s = settings.replace(lora_steps=lora_steps, lora_lr=settings.lora_lr * 1.0001)  # new cache key
        fit_static_prior(prior, splat, tensors, cams, s, static_prompt,
                         JobEvents(on_progress=lambda _p: marks.append(time.perf_counter())), cache_dir=cache)
        sync()
    out["lora_first_step_s"] = marks[0] - start
    out["lora_ms"] = 1000 * (marks[-1] - marks[0]) / max(1, len(marks) - 1)
    out["lora_peak_gib"] = _peak_gib(device)

    # Stage 2: MSD steps, split into sections. As the pipeline does: on a GPU, ε_static and the
    # inversion use a LoRA-merged UNet copy, the base UNet drops its LoRA layers, and both replay
    # CUDA graphs. Steps are a whole number of inversion periods, so amortisation is counted exactly.
    problem = MotionProblem.build(tensors, cams, settings)
    _reset_peak(device)
    static_model = None
    if device.type == "cuda" and settings.batched_scores and settings.static_prior == "lora":
        static_model = prior.with_unet(lora.merged_copy(prior.unet))
        lora.remove_lora(prior.unet)
    period = settings.inversion_every if settings.noise_mode == "ddim_inversion" else 1
    msd_steps = period * max(1, -(-msd_steps // period))
    graphs = prior.graphed(*([static_model] if static_model else [])) if settings.cuda_graphs else contextlib.nullcontext()
    with graphs:
        sync()
        start = time.perf_counter()  # the first steps of a job: graph capture included
        optimise_motion(prior, problem, cond, settings.replace(msd_steps=warmup), JobEvents(), generator,
                        static_model=static_model)
        sync()
        out["msd_first_steps_s"] = time.perf_counter() - start
        timer = SectionTimer(device)
        start = time.perf_counter()
        optimise_motion(prior, problem, cond, settings.replace(msd_steps=msd_steps), JobEvents(), generator,
                        timer=timer, static_model=static_model)
        sync()
    del static_model
    out["msd_ms"] = 1000 * (time.perf_counter() - start) / msd_steps
    out["msd_timed_steps"] = msd_steps
    for name in MSD_SECTIONS:
        out[f"msd_{name}_ms"] = timer.mean_ms(name)
    out["msd_peak_gib"] = _peak_gib(device)

    # Stage 3: refinement steps on the 2× clip (the target refresh every 10 steps is amortised).
    if refine_steps:
        lora.remove_lora(prior.unet)
        _reset_peak(device)
        s = settings.replace(refine_steps=refine_steps, refine_frame_multiplier=max(2, settings.refine_frame_multiplier))
        sync()
        start = time.perf_counter()
        with prior.graphed() if settings.cuda_graphs else contextlib.nullcontext():
            refine_motion(prior, problem, cond, s, JobEvents(), generator)
        sync()
        out["refine_ms"] = 1000 * (time.perf_counter() - start) / refine_steps
        out["refine_peak_gib"] = _peak_gib(device)
    lora.remove_lora(prior.unet)
    return out


# ---- generate-then-fit presets (`standard`): guide draw, turn search, fit, refinement ------------------
GENERATE_FIT_KEYS = ("guide_draw_first_s", "guide_draw_s", "yaw_search_s", "fit_first_step_s", "fit_ms",
                     "refine_ms", "draw_peak_gib", "fit_peak_gib", "refine_peak_gib",
                     "stage_first_preview_s", "stage_projected_s")


def generates_then_fits(settings: JobSettings) -> bool:
    """Whether a preset draws a guide clip and fits to it instead of running MSD (``standard``)."""
    return settings.guide_steps > 0 and settings.msd_steps == 0


def measure_generate_fit(prior, splat, settings: JobSettings, device: torch.device, *, fit_steps: int,
                         refine_steps: int) -> dict:
    """Seconds and ms per step of each stage of a generate-then-fit job, running the stages' own code:
    the guide draw (``guide_denoise_steps`` DDIM steps with CFG; the first includes the CUDA-graph
    capture, which every job pays since the graphs live for one job), the turn search, guide-fit steps
    and refinement steps (a whole refresh period, so the target refresh is amortised exactly)."""
    from animus3d_worker.pipeline import derive_static_prompt, encode_conditioning
    from animus3d_worker.render import make_cameras
    from animus3d_worker.splat_tensors import SplatTensors
    from animus3d_worker.stages.guide import FRONT_VIEW, draw_guide_clips, fit_to_guide
    from animus3d_worker.stages.msd import MotionProblem
    from animus3d_worker.stages.refine import REFRESH_EVERY, refine_motion
    from animus3d_worker.stages.yaw_search import search_yaw

    prompt = "the character waves its right arm"
    tensors = SplatTensors.from_splat(splat, device)
    lo, hi = tensors.bbox
    cams = make_cameras(lo, hi, resolution=settings.resolution, orbit_views=settings.orbit_views,
                        elevation_deg=settings.camera_elevation_deg, device=device)
    cond = encode_conditioning(prior, prompt, derive_static_prompt(prompt))
    problem = MotionProblem.build(tensors, cams, settings)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    graphs = prior.graphed if settings.cuda_graphs else contextlib.nullcontext
    out: dict = {}

    def timed(fn):
        sync()
        start = time.perf_counter()
        value = fn()
        sync()
        return value, time.perf_counter() - start

    _reset_peak(device)
    with graphs():
        draws, out["guide_draw_first_s"] = timed(
            lambda: draw_guide_clips(prior, problem, cond, settings, torch.Generator().manual_seed(0)))
        _, out["guide_draw_s"] = timed(
            lambda: draw_guide_clips(prior, problem, cond, settings, torch.Generator().manual_seed(0)))
    out["draw_peak_gib"] = _peak_gib(device)
    guide = draws.kept_clip
    if settings.guide_yaw_search and problem.field.global_motion is not None:
        _, out["yaw_search_s"] = timed(lambda: search_yaw(problem, guide, FRONT_VIEW))
    else:
        out["yaw_search_s"] = 0.0

    _reset_peak(device)
    marks: list[float] = []
    fit = settings.replace(guide_steps=fit_steps, guide_yaw_search=False)
    sync()
    start = time.perf_counter()
    _, total_s = timed(lambda: fit_to_guide(problem, guide, fit, JobEvents(),
                                            on_step=lambda _s, _n: marks.append(time.perf_counter())))
    out["fit_first_step_s"] = marks[0] - start
    out["fit_ms"] = 1000 * total_s / fit_steps
    out["fit_peak_gib"] = _peak_gib(device)

    if refine_steps and settings.refine_steps:
        steps = REFRESH_EVERY * max(1, -(-refine_steps // REFRESH_EVERY))
        _reset_peak(device)
        with graphs():
            _, seconds = timed(lambda: refine_motion(prior, problem, cond, settings.replace(refine_steps=steps),
                                                     JobEvents(), torch.Generator().manual_seed(0)))
        out["refine_ms"] = 1000 * seconds / steps
        out["refine_peak_gib"] = _peak_gib(device)
    # A job: the draw, the search, the fit (twice when the search finds a turn: the upper bound here),
    # the refinement. The first PREVIEW goes out after the first fit step.
    fits = 2 if settings.guide_yaw_search else 1
    out["stage_first_preview_s"] = out["guide_draw_first_s"] + out["yaw_search_s"] + out["fit_first_step_s"]
    out["stage_projected_s"] = (out["guide_draw_first_s"] + out["yaw_search_s"]
                                + fits * settings.guide_steps * out["fit_ms"] / 1000
                                + settings.refine_steps * out.get("refine_ms", 0.0) / 1000)
    return out


def whole_job(prior, splat, settings: JobSettings, device: torch.device, spec: str = "bench") -> dict:
    """One job through ``pipeline.run_job`` with ``prior`` already loaded (a warm worker): seconds to the
    first PREVIEW, to the result, the job's own stage timings and the peak GPU memory."""
    from animus3d_worker.pipeline import PriorCache, run_job

    priors = PriorCache()
    priors.put(spec, device, prior.dtype, prior)
    models = ModelConfig(motion_prior=spec, dtype=str(prior.dtype).replace("torch.", ""))
    first: dict = {}
    start = time.perf_counter()

    def on_preview(*_args) -> None:
        first.setdefault("t", time.perf_counter() - start)

    _reset_peak(device)
    with tempfile.TemporaryDirectory() as cache:
        result = run_job(splat, "the character waves its right arm", settings, device=str(device), models=models,
                         events=JobEvents(on_preview=on_preview), priors=priors, lora_cache_dir=cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"job_s": time.perf_counter() - start, "job_first_preview_s": first.get("t", float("nan")),
            "job_peak_gib": _peak_gib(device), "job_timings": dict(result.timings)}


def project_seconds(m: dict, settings: JobSettings) -> float:
    """Projected wall time of a job with ``settings`` from per-step costs ``m``."""
    total = settings.lora_steps * m["lora_ms"] + settings.msd_steps * m["msd_ms"]
    total += settings.refine_steps * m.get("refine_ms", 0.0)
    return total / 1000.0


def project_first_preview(m: dict, settings: JobSettings) -> float:
    """Seconds from job start to the first PREVIEW (sent after MSD step 1): the LoRA stage plus the
    first MSD steps as measured (graph capture included); model load and gsplat compile excluded."""
    lora = m.get("lora_first_step_s", 0.0) + max(0, settings.lora_steps - 1) * m["lora_ms"] / 1000.0
    return lora + m.get("msd_first_steps_s", 0.0)


def reference_settings(preset: str = "paper") -> JobSettings:
    """The paper run as a direct implementation would execute it: one forward per prediction, a
    full inversion every step, no graphs (and fp32, set on the prior)."""
    return JobSettings.from_preset(preset, batched_scores=False, inversion_every=1, cuda_graphs=False)


DEFAULT_PRESETS = ("standard", "draft", "msd", "high", "paper")
# A CPU smoke run (--small): the same code path at sizes a test can afford.
SMALL = dict(resolution=32, frames=4, orbit_views=2)
SMALL_GENERATE_FIT = dict(guide_steps=4, guide_denoise_steps=2, refine_steps=2)


def load_bench_prior(which: str, device: torch.device, dtype: torch.dtype, text_transport: str | None = None):
    """"full": the ModelScope-size random prior; "embedded" / "tiny" (or any spec): ``load_prior``. With
    ``text_transport`` a MiniLM-conditioned prior folder ("embedded" or a path) reads its prompts
    through that transport copy of the encoder (a machine without the encoder package)."""
    if which == "full":
        return build_full_size_prior(device, dtype)
    if text_transport:
        from animus3d_worker.priors.loading import EMBEDDED_FOLDER

        from .frozen_text import load_prior_with_transport

        return load_prior_with_transport(EMBEDDED_FOLDER if which == "embedded" else which, text_transport,
                                         device=device, dtype=dtype)
    from animus3d_worker.priors import load_prior

    return load_prior(which, device=device, dtype=dtype)


def bench_settings(preset: str, prior, small: bool) -> JobSettings:
    """The preset as a job runs it on ``prior`` (no larger than the prior's own frame size)."""
    settings = JobSettings.from_preset(preset)
    if small:
        settings = settings.replace(**SMALL, **(SMALL_GENERATE_FIT if generates_then_fits(settings) else {}))
    native = getattr(prior, "native_resolution", None)
    if native and settings.resolution > native:
        settings = settings.replace(resolution=native)
    return settings


def run_bench(device: str = "cuda", presets: tuple[str, ...] = DEFAULT_PRESETS, gaussians: int = 200_000,
              msd_steps: int = 6, lora_steps: int = 6, refine_steps: int = 10, fit_steps: int = 20,
              reference: bool = True, small: bool = False, prior_spec: str | None = None, whole_jobs: bool = True,
              printer=print, text_transport: str | None = None) -> dict:
    """Measures each preset and, for each, a direct reference of it in the same run; returns the numbers.

    Generate-then-fit presets (``standard``): stage by stage, and (``whole_jobs``) a whole job through
    ``run_job`` on the loaded, warm prior, against a reference job of the same preset (fp32, eager, no
    graphs). Each row's numbers are printed as JSON as soon as they exist. MSD presets: per-step costs projected to a job,
    against the paper's run executed directly."""
    from animus3d_shared.samples import make_character

    from animus3d_worker.pipeline import resolve_device

    dev = resolve_device(device)
    fast_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    prior_spec = prior_spec or ("tiny" if small else "full")
    prior = load_bench_prior(prior_spec, dev, fast_dtype, text_transport)
    splat = make_character(seed=0, count=gaussians)
    rows: dict[str, dict] = {}
    msd_presets = []
    for preset in presets:
        settings = bench_settings(preset, prior, small)
        t0 = time.perf_counter()
        if generates_then_fits(settings):
            row = measure_generate_fit(prior, splat, settings, dev, fit_steps=fit_steps, refine_steps=refine_steps)
            if whole_jobs:  # the stage measurements above warmed the allocator and kernels, as a worker's first job
                row.update(whole_job(prior, splat, settings, dev))
            rows[preset] = row
            if reference:
                # A direct implementation: fp32, eager, and every Gaussian rendered in every fit.
                ref = settings.replace(cuda_graphs=False, batched_scores=False, fit_gaussians_per_pixel=0.0)
                with _prior_dtype(prior, torch.float32):
                    ref_row = measure_generate_fit(prior, splat, ref, dev, fit_steps=fit_steps, refine_steps=refine_steps)
                    if whole_jobs:
                        ref_row.update(whole_job(prior, splat, ref, dev))
                rows[f"{preset} reference"] = ref_row
            printer(f"  measured {preset}: guide draw {row['guide_draw_s']:.2f} s, fit {row['fit_ms']:.1f} ms/step"
                    + (f", job {row['job_s']:.1f} s" if "job_s" in row else ""))
        else:
            msd_presets.append(preset)
            rows[preset] = measure(prior, splat, settings, dev, lora_steps=lora_steps, msd_steps=msd_steps,
                                   refine_steps=refine_steps if settings.refine_steps else 0)
            rows[preset]["projected_s"] = project_seconds(rows[preset], settings)
            rows[preset]["first_preview_s"] = project_first_preview(rows[preset], settings)
            printer(f"  measured {preset}: msd {rows[preset]['msd_ms']:.1f} ms/step")
        rows[preset]["bench_wall_s"] = time.perf_counter() - t0
        for name in (preset, f"{preset} reference"):
            if name in rows:
                printer(f"  {name}: {json.dumps(rows[name])}")
    if reference and msd_presets:
        settings = reference_settings()
        if small:
            settings = settings.replace(**SMALL)
        with _prior_dtype(prior, torch.float32):
            rows["reference"] = measure(prior, splat, settings, dev, lora_steps=lora_steps,
                                        msd_steps=max(2, msd_steps // 2), refine_steps=refine_steps)
        rows["reference"]["projected_s"] = project_seconds(rows["reference"], settings)
        rows["reference"]["first_preview_s"] = project_first_preview(rows["reference"], settings)
        for preset in msd_presets:  # the reference executing each preset's own step counts
            rows["reference"][f"projected_{preset}_steps_s"] = project_seconds(
                rows["reference"], bench_settings(preset, prior, small))
        printer("  measured reference (fp32, one forward per prediction, full inversion every step)")
    return {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "gaussians": gaussians,
            "prior": prior_spec, "rows": rows}


MSD_KEYS = (["lora_first_step_s", "lora_ms", "msd_ms"] + [f"msd_{s}_ms" for s in MSD_SECTIONS]
            + ["msd_timed_steps", "msd_first_steps_s", "refine_ms", "lora_peak_gib", "msd_peak_gib", "refine_peak_gib",
               "first_preview_s", "projected_s"])
JOB_KEYS = ("job_first_preview_s", "job_s", "job_peak_gib")


def _table(rows: dict, cols: list[str], keys) -> list[str]:
    lines = ["| metric | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for key in keys:
        cells = []
        for c in cols:
            v = rows[c].get(key)
            cells.append("—" if v is None or v != v else (f"{v:.2f}" if "gib" in key else f"{v:.1f}"))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def format_table(result: dict) -> str:
    rows = result["rows"]
    lines = [f"device: {result['device']}   prior: {result.get('prior', 'full')}   splat: {result['gaussians']} Gaussians"]
    fit_cols = [c for c in rows if "guide_draw_s" in rows[c]]
    msd_cols = [c for c in rows if c not in fit_cols]
    if fit_cols:
        lines += ["", "Generate-then-fit (the guide draw includes the per-job CUDA-graph capture; the projection "
                      "counts two fits, as when the turn search finds a turn; job_*: a whole job through run_job "
                      "on the loaded, warm prior):", ""]
        lines += _table(rows, fit_cols, GENERATE_FIT_KEYS + JOB_KEYS)
        for col in fit_cols:
            ref = rows.get(f"{col} reference")
            if ref is None:
                continue
            fast = rows[col]
            key = "job_s" if "job_s" in fast and "job_s" in ref else "stage_projected_s"
            lines.append(f"`{col}` against its direct reference (fp32, eager, no graphs), same run: whole job "
                         f"{ref[key]:.1f} s → {fast[key]:.1f} s = {ref[key] / fast[key]:.1f}×, guide draw "
                         f"{ref['guide_draw_first_s'] / fast['guide_draw_first_s']:.1f}×, fit step "
                         f"{ref['fit_ms'] / fast['fit_ms']:.1f}×"
                         + (f", refinement step {ref['refine_ms'] / fast['refine_ms']:.1f}×" if "refine_ms" in fast else ""))
    if msd_cols:
        lines += ["", "MSD presets (ms per step, projected to a job):", ""]
        lines += _table(rows, msd_cols, MSD_KEYS)
        ref = rows.get("reference")
        for col in msd_cols:
            if ref is None or col == "reference" or f"projected_{col}_steps_s" not in ref:
                continue
            std = rows[col]
            lines.append(f"`{col}` against the reference (the paper's run executed directly: fp32, one forward per "
                         f"prediction, full inversion every step, eager), same run: MSD step "
                         f"{ref['msd_ms'] / std['msd_ms']:.1f}×; its own step counts executed the reference way "
                         f"{ref[f'projected_{col}_steps_s'] / 60:.1f} min → {std['projected_s'] / 60:.1f} min = "
                         f"{ref[f'projected_{col}_steps_s'] / std['projected_s']:.1f}×")
    return "\n".join(lines)


def unet_forward_table(prior, device: torch.device, frames: int = 16, latent: int = 32, repeats: int = 5) -> dict:
    """ms per UNet forward for each dtype, with and without LoRA (fp32 LoRA weights, and LoRA cast to the
    base dtype), at batch 1 and 3 — what decides the pipeline's precision and batching."""
    from animus3d_worker.priors import lora

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    table: dict[str, dict[str, float]] = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        with _prior_dtype(prior, dtype):
            for variant in ("no_lora", "lora_fp32", "lora_cast"):
                lora.remove_lora(prior.unet)
                if variant != "no_lora":
                    params = lora.inject_lora(prior.unet, rank=16, alpha=16.0)
                    if variant == "lora_cast":
                        for p in params:
                            p.data = p.data.to(dtype)
                for batch in (1, 3):
                    x = torch.randn(batch, prior.latent_channels, frames, latent, latent, device=device, dtype=dtype)
                    text = torch.randn(batch, 77, prior.unet.config.cross_attention_dim, device=device, dtype=dtype)
                    t = torch.full((batch,), 500, device=device, dtype=torch.long)
                    with torch.no_grad():
                        for _ in range(2):
                            prior.predict_noise(x, t, text, lora=variant != "no_lora")
                        sync()
                        start = time.perf_counter()
                        for _ in range(repeats):
                            prior.predict_noise(x, t, text, lora=variant != "no_lora")
                        sync()
                    key = f"{str(dtype).replace('torch.', '')}/{variant}"
                    table.setdefault(key, {})[f"batch{batch}"] = 1000 * (time.perf_counter() - start) / repeats
            lora.remove_lora(prior.unet)
    return table


def format_unet_table(table: dict) -> str:
    lines = ["| UNet forward (16×32×32 latents) | batch 1 ms | batch 3 ms |", "|---|---|---|"]
    for key, row in table.items():
        lines.append(f"| {key} | {row['batch1']:.1f} | {row['batch3']:.1f} |")
    return "\n".join(lines)
