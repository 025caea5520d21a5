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


class SettingsError(ValueError):
    """A setting is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class JobSettings:
    """Everything that controls one animation job, except the splat, prompt and seed."""

    preset: str = "paper"  # the dataclass defaults are the paper's settings
    # Output
    frames: int = 16  # frames of the optimised clip (T)
    resolution: int = 256  # square render size for the video prior
    fps: int = 8
    # Cameras: each MSD step renders all frames from `views_per_step` cameras drawn from a
    # fixed front view and orbit views around the bounding box.
    views_per_step: int = 1
    orbit_views: int = 8
    camera_elevation_deg: float = 10.0
    # Stage 1: static prior (LoRA)
    static_prior: str = "lora"  # "lora" or "text" (the paper's ablation: text-only static prompt)
    lora_steps: int = 3000
    lora_batch: int = 1  # static clips (view × timestep) per LoRA step
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_lr: float = 1e-4
    # Stage 2a (optional, before MSD): the prior draws a guide clip from the still front render (noised
    # to `guide_strength`, then sampled under the motion prompt) and the field is fitted to it for
    # `guide_steps` steps (0 skips the stage: the paper's method).
    # `guide_noise`: "anchored" starts from fresh noise (seeded by the job) with the first frame held
    # to the still render's while sampling; "inverted" from the DDIM-inverted still render, which
    # pulls the clip back to the still object (docs/evaluation.md, eighth session: with the embedded
    # prior the prompted motion is drawn for 23/33 suite cases anchored at CFG 30, 9/33 inverted).
    # `guide_draws` (anchored only): clips drawn from as many noises; the prior keeps the one its
    # motion prompt explains best against the static prompt (lowest denoising-error difference).
    # Measured worse than one draw with the embedded prior (ninth session: the kept draw was the prompted
    # motion for 18/33 suite cases of 8 draws, the first draw for 23/33), so 1 by default.
    guide_steps: int = 0
    guide_noise: str = "anchored"
    guide_draws: int = 1
    guide_strength: float = 0.95
    guide_guidance_scale: float = 30.0
    guide_denoise_steps: int = 20
    guide_lr: float = 5e-3
    # The guide and refinement fits compare each rendered frame after the affine colour map that fits it
    # best to the prior's frame, not as rendered: a small prior recolours the object, and a plain pixel
    # loss makes the field move Gaussians to paint the new colours (worker/stages/pixel_fit.py).
    fit_colour_match: bool = False
    # Before the guide fit, search the turn about the vertical that explains the guide clip best and
    # start the whole-object motion from it (needs `global_motion`; when no turn is found that motion
    # stays frozen at the identity; when one is, the clip is also fitted without it and the fit that
    # explains it better is kept): from one view a gradient does not find a spin
    # (worker/stages/yaw_search.py).
    guide_yaw_search: bool = False
    # Stage 2: Motion Score Distillation
    msd_steps: int = 5000
    msd_lr: float = 1e-3
    guidance_scale: float = 7.5  # classifier-free guidance on the dynamic (motion) prediction
    # What that guidance steers away from: "empty" (the empty prompt: plain CFG, the paper) or
    # "static" (the static description of the subject, so guidance amplifies only the motion words).
    # An ablation: with the embedded prior "static" moved a still-prompted object 14x more
    # (docs/evaluation.md, 2 Dec 2026).
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
    arap_weight: float = 8.0
    arap_neighbours: int = 8
    # ARAP up to each frame's overall scale: growing or shrinking evenly is free, uneven stretching is
    # not (plain ARAP, the paper's, makes a prompted "grow" cost as much as tearing the object apart).
    arap_uniform_scale: bool = False
    tv_weight: float = 1.0
    field_resolution: int = 32  # coarsest spatial plane resolution of the HexPlane
    field_levels: int = 2  # spatial multi-resolution levels (each doubles)
    # A whole-object similarity per frame (rotation, translation, scale about the base) composed with
    # the local field, so a spin or a jump is a few numbers rather than thousands of deltas.
    global_motion: bool = False
    global_lr: float = 1e-2  # its learning rate (radians / bbox diagonals / log-scale per step)
    # A weak pull of that motion towards rest (mean square of its parameters relative to frame 0), so
    # what the fitted views do not constrain stays put (0: none).
    global_rest_weight: float = 0.0
    # Stage 3: refinement
    refine_steps: int = 200  # 0 skips refinement
    refine_frame_multiplier: int = 2  # temporal upsampling factor, 1..4
    refine_strength: float = 0.4  # SDEdit noise level in (0, 1)
    refine_lr: float = 5e-4
    # Streaming
    preview_every: int = 50  # send a PREVIEW every N MSD steps (0: never)
    preview_max_gaussians: int = 200_000  # previews are subsampled above this

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset: str = "standard", **overrides: Any) -> "JobSettings":
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
        """Build from a wire/JSON mapping: its 'preset' (default 'standard') plus overrides."""
        if not isinstance(data, Mapping):
            raise SettingsError("settings must be a mapping")
        data = dict(data)
        preset = data.pop("preset", "standard")
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
    "guide_draws": (1, 64),
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
    "preview_every": (0, 100_000),
    "preview_max_gaussians": (1, 10_000_000),
}

# Presets are overrides of the dataclass defaults, which are the paper's settings ("paper").
PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on a CPU with the tiny prior: for tests and smoke runs through the real code path.
    "test": dict(
        frames=4, resolution=32, orbit_views=2, lora_steps=4, lora_rank=4, lora_alpha=4.0,
        msd_steps=6, inversion_steps=2, field_resolution=8, field_levels=1,
        arap_neighbours=4, refine_steps=2, refine_frame_multiplier=2, preview_every=2,
    ),
    # A quick look: about two minutes on a GPU.
    "draft": dict(
        frames=16, resolution=128, lora_steps=40, lora_batch=4, lora_lr=5e-4, msd_steps=400,
        inversion_steps=4, inversion_every=4, refine_steps=0, preview_every=25,
    ),
    # The product default: generate, then fit. The prior draws the still object moving as prompted
    # (anchored guide clip), the field is fitted to it and refined; no MSD. On the 36-case suite with the
    # embedded prior (GPU, 3 Dec 2026) this got 15/36 motions right against MSD's 9/36 (LoRA 60 + MSD 800,
    # the previous default, kept in `msd_standard`), at 23.6 dB appearance against 29.7 (docs/evaluation.md,
    # ninth session). A coarse field (16³, one level): from one fitted view a finer one makes nods of spins.
    # ARAP up to a uniform scale (switched on after that suite run): a prompted grow or shrink is then not
    # fitted as a jump or a tilt (CPU, same session: grow/shrink cases 0/7 -> 5/7; 6 of 7 cases the
    # suite run got right stayed right). Suite with it, GPU, 3 Dec 2026 (tenth session): 20/36, 23.2 dB.
    # The fits compare colour-matched frames (`fit_colour_match`): the prior recolours the object, and
    # the plain pixel loss made the field paint. Suite, GPU, tenth session: 24/36 at 24.5 dB with the
    # first version of the map; the shipped one (render mapped to the prior's frame) 10/12 at 25.8 dB
    # on 12 of the cases, where that first version had 9/12 at 25.2 and the plain loss 5/12 at 22.2.
    # A turn searched for before the fit (`guide_yaw_search`, with the whole-object motion it starts and
    # that stays frozen when no turn is found): suite, GPU, 3 Dec 2026 (eleventh session): 27/36 at
    # 25.8 dB; it changed the 4 cases whose guide turns (animal and vehicle spins gained, a plant's jump
    # drawn turning lost), the rest are the jobs without it. The guide drawn in 50 DDIM steps instead of
    # 20: 30/36 (83 %) at 25.7 dB with the default seed, 28/36 with seed 1, where 20 steps got 27 and 26.
    "standard": dict(
        guide_steps=200, guide_denoise_steps=50, msd_steps=0, field_resolution=16, field_levels=1,
        arap_uniform_scale=True, fit_colour_match=True, global_motion=True, guide_yaw_search=True,
        lora_steps=60, lora_batch=2, lora_lr=5e-4, inversion_every=10,
        refine_steps=100, preview_every=25,
    ),
    # The paper's method at minute scale (the default until December 2026): LoRA static prior, 800 MSD
    # steps from DDIM-inverted noise, refinement. The LoRA sees 2 static clips per step (4 would need
    # 40 GiB at ModelScope size), the inverted noise is reused for `inversion_every` steps (see
    # docs/benchmarks.md and docs/evaluation.md for what this costs).
    "msd_standard": dict(
        lora_steps=60, lora_batch=2, lora_lr=5e-4, msd_steps=800, inversion_every=10,
        refine_steps=100, preview_every=25,
    ),
    # Longer optimisation, more frames after refinement.
    "high": dict(
        lora_steps=200, lora_batch=2, lora_lr=5e-4, msd_steps=2000, inversion_every=5,
        refine_steps=200, refine_frame_multiplier=4, field_levels=3, views_per_step=2,
    ),
    # The paper's settings (3k LoRA iterations, 5k MSD steps, a full inversion every step): hours.
    "paper": dict(),
}
