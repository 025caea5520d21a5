"""Job settings and presets: plain data shared by the CLI, the worker and the Blender panel.

A job's settings are a preset plus overrides. Every field is validated here, so the worker can
refuse bad settings with a clear message before any compute starts, and the Blender panel can
show the same limits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

NOISE_MODES = ("ddim_inversion", "random")
SCORE_MODES = ("msd", "sds")
STATIC_PRIORS = ("lora", "text")
GUIDANCE_NEGATIVES = ("empty", "static")
GUIDE_NOISES = ("inverted", "anchored")


DEFAULT_PRESET = "standard"  # what a job without a preset runs: the panel, the CLI and the wire


class SettingsError(ValueError):
    """A setting is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class JobSettings:
    """Everything that controls one animation job, except the splat, prompt and seed."""

    preset: str = "paper"  # the dataclass defaults are the paper's settings
    # ---- Output -------------------------------------------------------------------------------
    frames: int = 16  # frames of the optimised clip (T)
    resolution: int = 256  # square render size for the video prior
    fps: int = 8
    # ---- Prompt -------------------------------------------------------------------------------
    # Condition the motion prior on the learnt caption the prompt reads as (the prompt's subject, the
    # nearest learnt motion's caption, a learnt speed word) rather than on the words as typed; acts
    # only with a prior that lists its learnt motions (worker/understanding.py).
    read_prompt: bool = True
    # ---- Cameras (every stage) ----------------------------------------------------------------
    # Each step renders all frames from `views_per_step` cameras drawn from a fixed front view and
    # `orbit_views` orbit views around the bounding box.
    views_per_step: int = 1
    orbit_views: int = 8
    camera_elevation_deg: float = 10.0
    # ---- Motion field and regularisers (every stage that moves the field) ----------------------
    field_resolution: int = 32  # coarsest spatial plane resolution of the HexPlane
    field_levels: int = 2  # spatial multi-resolution levels (each doubles)
    arap_weight: float = 8.0
    arap_neighbours: int = 8
    # ARAP up to each frame's overall scale: growing or shrinking evenly is free, uneven stretching is
    # not (plain ARAP, the paper's, makes a prompted "grow" cost as much as tearing the object apart).
    arap_uniform_scale: bool = False
    tv_weight: float = 1.0
    # A whole-object similarity per frame (rotation, translation, scale about the base) composed with
    # the local field, so a spin or a jump is a few numbers rather than thousands of deltas.
    global_motion: bool = False
    global_lr: float = 1e-2  # its learning rate in the guide fit and MSD (radians / bbox diagonals / log-scale)
    # A weak pull of that motion towards rest (mean square of its parameters relative to frame 0), so
    # what the fitted views do not constrain stays put (0: none).
    global_rest_weight: float = 0.0
    # The guide and refinement fits compare each rendered frame after the affine colour map that fits it
    # best to the prior's frame: a small prior recolours the object, and a plain pixel loss makes the
    # field move Gaussians to paint the new colours (worker/stages/pixel_fit.py).
    fit_colour_match: bool = False
    # Those fits also compare box-averaged copies at 1/2 … 1/2^N size (the loss is the mean over
    # sizes), so a part drawn far from where the object has it still pulls on the field (0: full size
    # only, every preset: docs/prior.md, "Sides").
    fit_coarse_levels: int = 0
    # Every fit (guide, MSD, refinement) renders at most this many Gaussians per pixel of its frame
    # (× resolution²), drawn at random (seeded by the job) and each grown by √(N/n) so they cover the
    # frame as the whole splat does; the result still moves every Gaussian, since the field is a
    # function of position (0: all). At one per pixel a subset draws the frame within about 32 dB of
    # the whole splat, and a renderer's cost grows with the Gaussians (docs/benchmarks.md).
    fit_gaussians_per_pixel: float = 0.0
    # ---- Guide stage (generate, then fit: the shipped method) ----------------------------------
    # The prior draws a guide clip from the still front render (noised to `guide_strength`, then
    # sampled under the motion prompt in `guide_denoise_steps` DDIM steps) and the field is fitted to
    # it for `guide_steps` steps (0 skips the stage: the paper's method).
    # `guide_noise`: "anchored" starts from fresh noise (seeded by the job) with the first frame held
    # to the still render's while sampling; "inverted" from the DDIM-inverted still render.
    # `guide_draws` (anchored only): clips drawn from as many noises; the prior keeps the one its
    # motion prompt explains best against the static prompt (docs/evaluation.md has the comparison).
    guide_steps: int = 0
    # `guide_fit_frames`: frames rendered and compared a fit step, drawn at random (the same seeded
    # draws for every job) from the fitted window; 0 compares every frame of the window (a smaller
    # number is a cheaper, noisier step).
    guide_fit_frames: int = 0
    guide_noise: str = "anchored"
    guide_draws: int = 1
    # When the prompt names a side of the object itself ("its left arm"; the prompt is understood as
    # a learnt caption that does), rounds of `guide_draws` clips are drawn until one moves that side
    # of the object, at most `guide_side_draws` clips in all (anchored only; 1: the first round is
    # kept). The object faces the front camera: its own right is the image's left. Off in every
    # preset: with or without `fit_coarse_levels` it has not moved the held-out count (docs/prior.md, "Sides").
    guide_side_draws: int = 1
    # The prior hardly tells left from right; when the reading names a side of the object or a
    # direction of travel ("to the left") and the kept guide clip moves the other side or travels the
    # other way, the clip's motion is mirrored left to right before the fit (the object faces the
    # camera, so the mirrored motion moves its other side). On in draft, standard and high
    # (docs/prior.md, "Sides").
    guide_mirror: bool = False
    guide_strength: float = 0.95
    guide_guidance_scale: float = 30.0
    guide_denoise_steps: int = 20
    guide_lr: float = 5e-3
    # Before the guide fit, search the turn about the vertical that explains the guide clip best and
    # start the whole-object motion from it (needs `global_motion`; when no turn is found that motion
    # stays frozen at the identity; when one is, the clip is also fitted without it and the fit that
    # explains it better is kept): from one view a gradient does not find a spin
    # (worker/stages/yaw_search.py).
    guide_yaw_search: bool = False
    # ---- Static prior stage (LoRA; runs only for MSD with static_prior="lora") ------------------
    static_prior: str = "lora"  # "lora" or "text" (the paper's ablation: text-only static prompt)
    lora_steps: int = 3000
    lora_batch: int = 1  # static clips (view × timestep) per LoRA step
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_lr: float = 1e-4
    # ---- MSD stage (Motion Score Distillation: the paper's method) ------------------------------
    msd_steps: int = 5000  # 0 skips the stage
    msd_lr: float = 1e-3
    guidance_scale: float = 7.5  # classifier-free guidance on the dynamic (motion) prediction; refinement too
    # What that guidance steers away from: "empty" (the empty prompt: plain CFG, the paper) or
    # "static" (the static description of the subject, so guidance amplifies only the motion words).
    guidance_negative: str = "empty"
    noise_mode: str = "ddim_inversion"  # "ddim_inversion" or "random" (the paper's ablation)
    score_mode: str = "msd"  # "msd": ε_dynamic − ε_static; "sds": ε_dynamic − ε (plain SDS, the baseline)
    inversion_steps: int = 10
    inversion_every: int = 1  # re-invert every N steps, reusing the inverted noise in between (1 = paper)
    batched_scores: bool = True  # ε_dynamic and ε_static in one forward (per-sample LoRA); False = reference
    cuda_graphs: bool = True  # replay frozen-UNet forwards from CUDA graphs on a GPU; False = eager (reference)
    t_min: float = 0.02
    t_max: float = 0.98
    t_anneal: bool = True  # lower t_max linearly to `t_anneal_to` over the run
    t_anneal_to: float = 0.5
    # ---- Refinement stage ----------------------------------------------------------------------
    refine_steps: int = 200  # 0 skips refinement
    refine_frame_multiplier: int = 2  # temporal upsampling factor, 1..4
    refine_strength: float = 0.4  # SDEdit noise level in (0, 1)
    refine_lr: float = 5e-4
    refine_global_lr: float = 5e-3  # the whole-object motion's learning rate in refinement
    # ---- Streaming -----------------------------------------------------------------------------
    preview_every: int = 50  # send a PREVIEW every N steps of a stage (0: never)
    preview_max_gaussians: int = 200_000  # previews are subsampled above this

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset: str = DEFAULT_PRESET, **overrides: Any) -> "JobSettings":
        if preset not in PRESETS:
            raise SettingsError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        values = dict(PRESETS[preset])
        values["preset"] = preset
        unknown = sorted(set(overrides) - _FIELD_NAMES)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JobSettings":
        """Build from a wire/JSON mapping: its 'preset' (default DEFAULT_PRESET) plus overrides."""
        if not isinstance(data, Mapping):
            raise SettingsError("settings must be a mapping")
        data = dict(data)
        preset = data.pop("preset", DEFAULT_PRESET)
        if not isinstance(preset, str):
            raise SettingsError("setting 'preset' must be a string")
        return cls.from_preset(preset, **data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "JobSettings":
        unknown = sorted(set(changes) - _FIELD_NAMES)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        settings = dataclasses.replace(self, **changes)
        settings.validate()
        return settings

    # ---- validation ---------------------------------------------------------------------
    @property
    def clip_frames(self) -> int:
        """Frames of the clip a job delivers: the optimised frames, times the refinement's multiplier
        when refinement runs."""
        return self.frames * (self.refine_frame_multiplier if self.refine_steps > 0 else 1)

    def frames_for_clip(self, clip_frames: int) -> int:
        """The ``frames`` setting whose delivered clip is the shortest one of at least ``clip_frames``
        frames (the refinement delivers a multiple of its multiplier)."""
        step = self.clip_frames // self.frames
        low, high = _RANGES["frames"]
        return int(min(max(-(-int(clip_frames) // step), low), high))

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = _FIELD_TYPES[f.name]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                value = float(value)
            if kind is bool:
                ok = isinstance(value, bool)
            elif kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, kind)
            if not ok:
                raise SettingsError(
                    f"setting {f.name!r} must be {kind.__name__}, got {type(value).__name__}"
                )
            if kind is float and value != value:  # NaN
                raise SettingsError(f"setting {f.name!r} must be a finite number")
            bounds = _RANGES.get(f.name)
            if bounds is not None:
                lo, hi = bounds
                if not (lo <= value <= hi):
                    raise SettingsError(f"setting {f.name!r} = {value} is outside [{lo}, {hi}]")
        if self.preset not in PRESETS:
            raise SettingsError(f"unknown preset {self.preset!r}")
        if self.static_prior not in STATIC_PRIORS:
            raise SettingsError(f"static_prior must be one of {STATIC_PRIORS}")
        if self.guidance_negative not in GUIDANCE_NEGATIVES:
            raise SettingsError(f"guidance_negative must be one of {GUIDANCE_NEGATIVES}")
        if self.score_mode not in SCORE_MODES:
            raise SettingsError(f"score_mode must be one of {SCORE_MODES}")
        if self.noise_mode not in NOISE_MODES:
            raise SettingsError(f"noise_mode must be one of {NOISE_MODES}")
        if self.guide_noise not in GUIDE_NOISES:
            raise SettingsError(f"guide_noise must be one of {GUIDE_NOISES}")
        if self.guide_yaw_search and not self.global_motion:
            raise SettingsError("guide_yaw_search needs global_motion=true (the turn it finds is the whole object's)")
        if self.guide_draws > 1 and self.guide_noise != "anchored":
            raise SettingsError("guide_draws > 1 needs guide_noise='anchored' (an inverted guide is one deterministic clip)")
        if not self.t_min < self.t_max:
            raise SettingsError("t_min must be below t_max")
        if self.t_anneal and not self.t_min < self.t_anneal_to <= self.t_max:
            raise SettingsError("t_anneal_to must lie in (t_min, t_max]")
        if self.resolution % 8:
            raise SettingsError("resolution must be a multiple of 8 (the VAE downsamples by 8)")


_FIELD_NAMES = {f.name for f in fields(JobSettings)}
_FIELD_TYPES = {f.name: {"int": int, "float": float, "bool": bool, "str": str}[f.type] for f in fields(JobSettings)}

_RANGES: dict[str, tuple[float, float]] = {
    "frames": (2, 128),
    "resolution": (16, 1024),
    "fps": (1, 120),
    "views_per_step": (1, 16),
    "orbit_views": (0, 64),
    "camera_elevation_deg": (-89.0, 89.0),
    "lora_steps": (0, 100_000),
    "lora_batch": (1, 64),
    "lora_rank": (1, 256),
    "lora_alpha": (1e-3, 1e4),
    "lora_lr": (1e-7, 1.0),
    "guide_steps": (0, 100_000),
    "guide_fit_frames": (0, 128),
    "guide_draws": (1, 64),
    "guide_side_draws": (1, 64),
    "fit_coarse_levels": (0, 8),
    "fit_gaussians_per_pixel": (0.0, 1000.0),
    "guide_strength": (0.01, 0.99),
    "guide_guidance_scale": (0.0, 100.0),
    "guide_denoise_steps": (1, 200),
    "guide_lr": (1e-7, 1.0),
    "msd_steps": (0, 100_000),
    "msd_lr": (1e-7, 1.0),
    "guidance_scale": (0.0, 100.0),
    "inversion_steps": (1, 200),
    "inversion_every": (1, 1000),
    "t_min": (0.0, 1.0),
    "t_max": (0.0, 1.0),
    "t_anneal_to": (0.0, 1.0),
    "arap_weight": (0.0, 1e6),
    "arap_neighbours": (1, 64),
    "tv_weight": (0.0, 1e6),
    "field_resolution": (2, 512),
    "field_levels": (1, 6),
    "global_lr": (0.0, 1.0),
    "global_rest_weight": (0.0, 1e6),
    "refine_steps": (0, 100_000),
    "refine_frame_multiplier": (1, 4),
    "refine_strength": (0.01, 0.99),
    "refine_lr": (1e-7, 1.0),
    "refine_global_lr": (0.0, 1.0),
    "preview_every": (0, 100_000),
    "preview_max_gaussians": (1, 10_000_000),
}

# Presets are overrides of the dataclass defaults, which are the paper's settings ("paper"). Each sets
# only settings that the stages it runs read (tests/test_presets.py checks this).
# draft < standard < high: the shipped method (generate, then fit), differing in budget. The prior draws
# the still object moving as prompted (anchored guide clip, its motion mirrored when it goes the other
# way than the prompt's side or direction), a turn is searched for, the field is fitted to the clip
# (colour-matched, ARAP up to a uniform scale) and refined; no MSD, so no LoRA.
_GENERATE_THEN_FIT = dict(
    msd_steps=0, field_resolution=16, field_levels=1, arap_uniform_scale=True, fit_colour_match=True,
    fit_gaussians_per_pixel=1.0,
    global_motion=True, guide_yaw_search=True, guide_mirror=True, preview_every=25,
)
PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on a CPU with the tiny prior: for tests and smoke runs through the real code path (the
    # paper's stages: LoRA, MSD, refinement). Not offered to artists.
    "test": dict(
        frames=4, resolution=32, orbit_views=2, lora_steps=4, lora_rank=4, lora_alpha=4.0,
        msd_steps=6, inversion_steps=2, field_resolution=8, field_levels=1,
        arap_neighbours=4, refine_steps=2, refine_frame_multiplier=2, preview_every=2,
    ),
    # A quick look: a shorter guide draw and fit, no refinement.
    "draft": dict(_GENERATE_THEN_FIT, guide_steps=100, guide_denoise_steps=20, refine_steps=0),
    # The product default.
    "standard": dict(_GENERATE_THEN_FIT, guide_steps=200, guide_denoise_steps=50, refine_steps=100),
    # A longer fit and refinement, four times the frames after refinement.
    "high": dict(_GENERATE_THEN_FIT, guide_steps=400, guide_denoise_steps=50, refine_steps=200,
                 refine_frame_multiplier=4),
    # The paper's method at minute scale: LoRA static prior (2 static clips per step), 800 MSD steps from
    # DDIM-inverted noise reused for 10 steps, refinement. For reproduction and comparison.
    "msd": dict(
        lora_steps=60, lora_batch=2, lora_lr=5e-4, msd_steps=800, inversion_every=10,
        refine_steps=100, preview_every=25,
    ),
    # The paper's settings (3k LoRA iterations, 5k MSD steps, a full inversion every step): hours.
    "paper": dict(),
}

# The presets offered to artists, cheapest first; `standard` is the default everywhere.
ARTIST_PRESETS = ("draft", "standard", "high")
