"""Training the small embedded text-to-video prior on synthetic motion clips.

The model uses exactly the classes of ModelScope's text-to-video pipeline — ``UNet3DConditionModel``,
``AutoencoderKL``, ``CLIPTextModel`` + a locally built ``CLIPTokenizer`` and ``DDIMScheduler`` — so
the exported folder loads through the normal ``load_prior(folder)`` path.

A run directory holds:

- ``dataset.pt``: the pre-rendered clips (uint8 [M, T, 3, H, W]) and their captions, rendered once;
- ``checkpoint/``: ``unet/``, ``vae/``, ``text_encoder/`` (safetensors via ``save_pretrained``),
  ``optimizer.pt`` and ``state.json`` (phase, step, losses, and the history: one entry per call with
  the steps it covered and the settings it used), rewritten every ``checkpoint_minutes``;
- ``export/``: the fp16 diffusers folder (the ``worker/assets/prior/`` layout); its
  ``animus3d_prior.json`` carries the configuration, step and history.

Text: with ``text_encoder="minilm"`` (the default) the UNet is conditioned on the frozen token
states of the packaged all-MiniLM-L6-v2 (``frozen_text``), computed as the worker computes them, and
the export's ``text_encoder/`` and ``tokenizer/`` refer to that package; with ``"clip"`` a small CLIP
text encoder and a locally built tokenizer are trained with the UNet.

Training has two phases: the VAE learns to reconstruct frames (``vae_steps``), then it is frozen,
its latent scale measured, and the UNet (and a CLIP text encoder) learn ε-prediction with the text
dropped (replaced by "") with probability ``text_dropout`` for classifier-free guidance. A run may
instead start from an exported prior (``init_from``): its VAE is kept frozen, its UNet weights are
taken wherever the shapes agree (the cross-attention's key and value projections differ when the text
encoder does), and training starts in the diffusion phase.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .frozen_text import FrozenText, FrozenTextError
from .motion_data import (DEFAULT_AMPLITUDE_RANGE, ORBIT_ELEVATION_DEG, MotionDataError, check_amplitude_range,
                          clip_specs, learnt_motions_document, mirror_caption, render_clip, spec_animation,
                          spec_object)
from animus3d_worker.priors import minilm
from animus3d_worker.priors.packing import PackingError, unpacked_folder
from animus3d_worker.priors.unet3d import TRAINED_PRIOR_INFO as EXPORT_MARKER  # the prior loader reads the same file
from animus3d_worker.understanding import LEARNT_MOTIONS

log = logging.getLogger("animus3d.train_prior")

MAX_TEXT_LENGTH = 77
EXPORT_LIMIT_BYTES = 15 * 1024 * 1024
EMA_FILE = "ema.safetensors"  # in a checkpoint: the moving average of the diffusion weights
DIFFUSION_COMPONENTS = ("unet", "text_encoder")  # the models the diffusion phase trains (and averages)
MODELSCOPE_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                            beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False,
                            set_alpha_to_one=False, steps_offset=1)


class TrainPriorError(RuntimeError):
    """Bad training request (run directory, checkpoint, configuration) or an oversized export."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved in the checkpoint; a resume must match)."""

    # data
    clips: int = 2400
    frames: int = 16
    resolution: int = 64
    gaussians: int = 1500
    jitter_deg: float = 4.0
    data_seed: int = 0
    amplitude_min: float = DEFAULT_AMPLITUDE_RANGE[0]  # amplitudes are uniform in amplitude_range
    # Distinct objects per kind and the first object seed. A saved config without these fields means 6
    # objects a kind (seeds 0-5); new runs draw each
    # clip's object from 2000 a kind starting at seed 10000, clear of the suite's seeds (100-112) and
    # of check-prior's unseen objects (HELD_OUT_OBJECT_SEED).
    objects_per_kind: int = 2000
    first_object_seed: int = 10_000
    # model sizes
    unet_channels: tuple[int, ...] = (48, 96, 96)  # ~5.4M params: the fp16 export stays under 15 MB
    unet_heads: int = 8
    vae_channels: tuple[int, ...] = (32, 64, 64)  # len-1 downsamples of 2: 64 px -> 16x16 latents
    text_hidden: int = 128  # "clip" only
    text_layers: int = 2  # "clip" only
    text_encoder: str = "minilm"  # "minilm": frozen packaged all-MiniLM-L6-v2; "clip": small CLIP trained here
    text_length: int = 32  # tokens of a caption ("minilm"; "clip" uses MAX_TEXT_LENGTH)
    # optimisation
    batch_size: int = 16
    vae_batch_frames: int = 64
    vae_steps: int = 1500
    lr: float = 2e-4
    vae_lr: float = 5e-4
    text_dropout: float = 0.1
    motion_weight: float = 0.0  # extra ε-loss weight where a clip's latents move (see motion_loss_weights)
    mirror_probability: float = 0.0  # share of diffusion samples flipped left-right, "left"/"right" swapped
    # Exponential moving average of the diffusion weights (UNet and text encoder), exported instead of
    # the raw weights; 0 = off. The average starts from the weights it is switched on with and warms
    # up as min(decay, (1 + n) / (10 + n)) over its n updates.
    ema_decay: float = 0.0
    checkpoint_minutes: float = 2.0
    seed: int = 0

    @property
    def amplitude_range(self) -> tuple[float, float]:
        return (self.amplitude_min, DEFAULT_AMPLITUDE_RANGE[1])

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        data = {**LEGACY_DATA_FIELDS, **data}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})


# What a saved configuration without the object-diversity or text-encoder fields was trained on.
LEGACY_DATA_FIELDS = {"objects_per_kind": 6, "first_object_seed": 0, "text_encoder": "clip"}


# ---- data ---------------------------------------------------------------------------------------------


def dataset_specs(cfg: TrainConfig) -> list:
    """The clip specs of ``cfg``'s dataset (deterministic; cheap: nothing is rendered)."""
    return clip_specs(cfg.clips, seed=cfg.data_seed, amplitude_range=cfg.amplitude_range,
                      objects_per_kind=cfg.objects_per_kind, first_object_seed=cfg.first_object_seed)


def training_captions(cfg: TrainConfig) -> list[str]:
    """Every caption a run on ``cfg`` conditions on: the clips', their mirrored forms and ""."""
    captions = {spec.caption for spec in dataset_specs(cfg)}
    return sorted(captions | {mirror_caption(c) for c in captions} | {""})


def render_dataset(cfg: TrainConfig, device: str = "cpu", progress: Callable[[int, int], None] | None = None,
                   backend: str = "auto") -> tuple[torch.Tensor, list[str]]:
    """Renders ``cfg.clips`` synthetic clips: (uint8 [M, T, 3, H, W] on the CPU, captions)."""
    specs = dataset_specs(cfg)
    objects: dict[tuple[str, int, bool], object] = {}
    clips = torch.empty((len(specs), cfg.frames, 3, cfg.resolution, cfg.resolution), dtype=torch.uint8)
    for i, spec in enumerate(specs):
        key = (spec.kind, spec.object_seed, spec.flaws)
        if key not in objects:
            objects[key] = spec_object(spec, cfg.gaussians)
        obj = objects[key]
        anim = spec_animation(obj, spec, cfg.frames)
        clip = render_clip(obj, anim, resolution=cfg.resolution, jitter_deg=cfg.jitter_deg,
                           azimuth_deg=spec.azimuth_deg, elevation_deg=ORBIT_ELEVATION_DEG if spec.azimuth_deg else 0.0,
                           rng=np.random.default_rng(spec.jitter_seed), device=device, backend=backend)
        clips[i] = (clip.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
        if progress and (i + 1) % 100 == 0:
            progress(i + 1, len(specs))
    return clips, [s.caption for s in specs]


def load_or_render_dataset(run_dir: Path, cfg: TrainConfig, device: str = "cpu", backend: str = "auto"
                           ) -> tuple[torch.Tensor, list[str]]:
    """The cached dataset of ``run_dir`` (rendered and saved on first use)."""
    path = run_dir / "dataset.pt"
    specs = dataset_specs(cfg)
    key = {k: cfg.to_json()[k]
           for k in ("clips", "frames", "resolution", "gaussians", "jitter_deg", "data_seed", "amplitude_min",
                     "objects_per_kind", "first_object_seed")}
    key["specs"] = hashlib.sha256(repr(specs).encode()).hexdigest()  # the vocabulary and families as well
    if path.is_file():
        data = torch.load(path, weights_only=True)
        if data.get("key") == key:
            return data["clips"], data["captions"]
        log.warning("dataset cache %s was made with other settings; re-rendering", path)
    start = time.perf_counter()
    clips, captions = render_dataset(cfg, device, lambda i, n: log.info("rendered %d/%d clips", i, n), backend)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "clips": clips, "captions": captions}, tmp)
    tmp.replace(path)
    log.info("dataset: %d clips in %.1f s", len(captions), time.perf_counter() - start)
    return clips, captions


# ---- models -------------------------------------------------------------------------------------------


def motion_loss_weights(latents: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-element ε-loss weights ``[B, 1, F, h, w]`` that stress where a clip moves.

    1 where a latent pixel equals its mean over the clip's frames, rising by ``strength`` per unit of
    deviation (latents have unit std after the VAE's scaling). A waving arm covers a few latent pixels
    of a few frames, so under plain MSE the loss barely cares whether the arm is there; weighting its
    pixels makes the text's motion part of the objective rather than a rounding error of appearance.
    """
    deviation = (latents - latents.mean(dim=2, keepdim=True)).abs().mean(dim=1, keepdim=True)
    return 1.0 + strength * deviation.float()


def build_tokenizer(folder: Path):
    """The locally built CLIP tokenizer, saved into ``folder``."""
    from transformers import CLIPTokenizer

    from animus3d_worker.priors.tokenizer import write_tokenizer_source

    write_tokenizer_source(folder)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_TEXT_LENGTH)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def norm_groups(channels: tuple[int, ...]) -> int:
    """GroupNorm groups of a UNet/VAE with these block widths (every width must be a multiple)."""
    return min(32, min(channels) // 2)


def check_config(cfg: TrainConfig) -> None:
    """Raises TrainPriorError for a configuration that cannot train (before any work is done)."""
    try:
        check_amplitude_range(cfg.amplitude_range)
    except MotionDataError as exc:
        raise TrainPriorError(f"amplitude_min {cfg.amplitude_min}: {exc}") from None
    for field_name in ("unet_channels", "vae_channels"):
        channels = tuple(getattr(cfg, field_name))
        if len(channels) < 2 or any(not isinstance(c, int) or c < 2 for c in channels):
            raise TrainPriorError(f"{field_name} must be at least two widths of 2 or more, got {list(channels)}")
        groups = norm_groups(channels)
        if any(c % groups for c in channels):
            raise TrainPriorError(f"{field_name} {list(channels)}: every width must be a multiple of {groups} "
                                  f"(the group-norm groups, min(32, smallest width / 2))")
    if cfg.text_encoder not in ("minilm", "clip"):
        raise TrainPriorError(f"text_encoder must be 'minilm' or 'clip', got {cfg.text_encoder!r}")
    if not 2 <= cfg.text_length <= minilm.MAX_TOKENS:
        raise TrainPriorError(f"text_length must be from 2 to {minilm.MAX_TOKENS}, got {cfg.text_length}")
    if cfg.text_hidden % 4:
        raise TrainPriorError(f"text_hidden must be a multiple of 4 (attention heads), got {cfg.text_hidden}")
    if not cfg.motion_weight >= 0:
        raise TrainPriorError(f"motion_weight must be 0 or more, got {cfg.motion_weight}")
    if not 0 <= cfg.ema_decay < 1:
        raise TrainPriorError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if not 0 <= cfg.mirror_probability <= 1:
        raise TrainPriorError(f"mirror_probability must be in [0, 1], got {cfg.mirror_probability}")
    if cfg.clips < 1 or cfg.objects_per_kind < 1 or cfg.first_object_seed < 0:
        raise TrainPriorError(f"clips and objects_per_kind must be at least 1 and first_object_seed not negative, "
                              f"got {cfg.clips}, {cfg.objects_per_kind}, {cfg.first_object_seed}")


def build_models(cfg: TrainConfig, tokenizer) -> dict:
    """Fresh UNet3D, VAE and (``"clip"``) CLIP text encoder of ``cfg``'s sizes (seeded by ``cfg.seed``)."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    n = len(cfg.unet_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        unet = UNet3DConditionModel(
            sample_size=cfg.resolution // 2 ** (len(cfg.vae_channels) - 1), in_channels=4, out_channels=4,
            down_block_types=("CrossAttnDownBlock3D",) * (n - 1) + ("DownBlock3D",),
            up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (n - 1),
            block_out_channels=tuple(cfg.unet_channels), layers_per_block=1,
            norm_num_groups=norm_groups(cfg.unet_channels),
            cross_attention_dim=text_width(cfg), attention_head_dim=cfg.unet_heads,
        )
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
            norm_num_groups=norm_groups(cfg.vae_channels),
            down_block_types=("DownEncoderBlock2D",) * len(cfg.vae_channels),
            up_block_types=("UpDecoderBlock2D",) * len(cfg.vae_channels),
            block_out_channels=tuple(cfg.vae_channels), sample_size=cfg.resolution,
        )
        if cfg.text_encoder != "clip":
            return {"unet": unet, "vae": vae}
        text = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_hidden * 4,
            num_hidden_layers=cfg.text_layers, num_attention_heads=4, max_position_embeddings=MAX_TEXT_LENGTH,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
    return {"unet": unet, "vae": vae, "text_encoder": text}


def text_width(cfg: TrainConfig) -> int:
    """Width of the text states the UNet attends to."""
    return minilm.HIDDEN if cfg.text_encoder == "minilm" else cfg.text_hidden


def diffusion_parameters(models: dict) -> list[tuple[str, torch.nn.Parameter]]:
    """("component.parameter", parameter) of the models the diffusion phase trains, in the optimiser's
    order: the names key the moving average (checkpoint and export). A frozen text encoder is not
    among the models."""
    return [(f"{name}.{key}", p) for name in DIFFUSION_COMPONENTS if name in models
            for key, p in models[name].named_parameters()]


def count_parameters(models: dict) -> int:
    return sum(p.numel() for m in models.values() for p in m.parameters())


# ---- the trainer ---------------------------------------------------------------------------------------

# Settings a resumed run may change: optimisation (loss weighting and left-right mirroring included),
# and what the clips are (how many, their seed, amplitude range and objects: the models and the
# rendering stay; a changed dataset is re-rendered, so a run can continue on new data without redoing
# the VAE phase).
TUNABLE_ON_RESUME = ("batch_size", "lr", "text_dropout", "checkpoint_minutes", "amplitude_min", "motion_weight",
                     "mirror_probability", "clips", "data_seed", "objects_per_kind", "first_object_seed",
                     "ema_decay")
# The settings each call's entry in the training history records (what may differ between calls).
HISTORY_SETTINGS = tuple(name for name in TUNABLE_ON_RESUME if name != "checkpoint_minutes")


def read_resumable_state(folder: Path) -> dict | None:
    """``{"config", "state"}`` of a checkpoint (``state.json``) or of an exported prior (its
    ``animus3d_prior.json``: weights in fp16 or 8 bits, no optimizer, no loss history); None if neither."""
    if (folder / "state.json").is_file():
        return json.loads((folder / "state.json").read_text())
    if (folder / EXPORT_MARKER).is_file():
        info = json.loads((folder / EXPORT_MARKER).read_text())
        if "config" not in info or info.get("phase") not in ("vae", "diffusion"):
            raise TrainPriorError(f"{folder / EXPORT_MARKER} does not describe a training run")
        return {"config": info["config"], "state": {"phase": info["phase"], "step": int(info.get("step", 0)),
                                                    "total_seconds": float(info.get("seconds", 0.0)),
                                                    "history": list(info.get("history", [])),
                                                    "initialised_from": info.get("initialised_from")}}
    return None



@dataclass
class TrainState:
    phase: str = "vae"  # "vae", then "diffusion"
    step: int = 0  # optimisation steps in the current phase
    total_seconds: float = 0.0
    losses: list = None  # (phase, step, loss) every few steps
    history: list = None  # one entry per train() call: steps covered, seconds, settings (HISTORY_SETTINGS)
    ema_updates: int = 0  # updates of the weights' moving average (TrainConfig.ema_decay) so far
    initialised_from: dict | None = None  # the exported prior a run started from (``init_from``), if any

    def __post_init__(self) -> None:
        self.losses = self.losses or []
        self.history = self.history or []


class PriorTrainer:
    """Owns the models, optimiser and run directory of one training run."""

    def __init__(self, run_dir: str | Path, cfg: TrainConfig | None = None, device: str = "cpu",
                 resume: str | Path | None = None, render_backend: str = "auto",
                 tuning: dict | None = None, init_from: str | Path | None = None,
                 text_transport: str | Path | None = None) -> None:
        from diffusers import DDIMScheduler

        self.run_dir = Path(run_dir)
        self.render_backend = render_backend
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(device)
        ckpt = Path(resume) if resume else self.run_dir / "checkpoint"
        saved = read_resumable_state(ckpt)
        resuming = saved is not None
        if resume and not resuming:
            raise TrainPriorError(f"nothing to resume at {ckpt}: neither a checkpoint (state.json) "
                                  f"nor an exported prior ({EXPORT_MARKER})")
        if resuming:
            saved_cfg = TrainConfig.from_json(saved["config"])
            if cfg is not None and cfg != saved_cfg:
                log.warning("resuming with the checkpoint's configuration, not the one given")
            cfg = saved_cfg
        bad = sorted(set(tuning or {}) - set(TUNABLE_ON_RESUME))
        if bad:
            raise TrainPriorError(f"cannot change {', '.join(bad)} of a run; only {', '.join(TUNABLE_ON_RESUME)}")
        if resuming and init_from:
            raise TrainPriorError(f"{ckpt} already holds this run's checkpoint: resume it, or start the run "
                                  f"from {init_from} in a new run directory")
        self.cfg = replace(cfg or TrainConfig(), **(tuning or {}))
        check_config(self.cfg)  # before minutes of model building and dataset rendering
        self.text: FrozenText | None = None
        if self.cfg.text_encoder == "minilm":
            try:
                self.text = FrozenText(self.cfg.text_length, text_transport, self.device)
            except (FrozenTextError, minilm.EncoderMissing, OSError) as exc:
                raise TrainPriorError(f"cannot load the frozen text encoder: {exc}") from None
            self.tokenizer = self.text.tokenizer
        else:
            self.tokenizer = build_tokenizer(self.run_dir / "tokenizer")
        self.scheduler = DDIMScheduler(**MODELSCOPE_SCHEDULER)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(self.device)
        self.models = build_models(self.cfg, self.tokenizer)
        self.state = TrainState()
        self.ema: dict[str, torch.Tensor] | None = None  # "component.parameter" -> float32 average
        if resuming:
            self._load_checkpoint(ckpt, saved)
        elif init_from:
            self._initialise_from(Path(init_from))
        for m in self.models.values():
            m.to(self.device)
        if self.ema is not None:
            self.ema = {k: v.to(self.device) for k, v in self.ema.items()}
        self.optimizer = self._make_optimizer()
        if resuming and (ckpt / "optimizer.pt").is_file():
            opt = torch.load(ckpt / "optimizer.pt", map_location=self.device, weights_only=False)
            if opt.get("phase") == self.state.phase:
                self.optimizer.load_state_dict(opt["state"])
        self.generator = torch.Generator(device="cpu").manual_seed(self.cfg.seed + 1000 * self.state.step + 1)
        self.clips: torch.Tensor | None = None
        self.latents: dict[bool, torch.Tensor] = {}  # mirrored? -> latents of every clip (diffusion phase)
        self.captions: list[str] = []

    # -- checkpoint ------------------------------------------------------------------------------
    def _load_checkpoint(self, ckpt: Path, saved: dict) -> None:
        from diffusers import AutoencoderKL, UNet3DConditionModel
        from transformers import CLIPTextModel

        # An export is fp16 (or 8-bit, restored here): training continues in float32.
        try:
            ckpt = unpacked_folder(ckpt, self.run_dir / "unpacked")
        except PackingError as exc:
            raise TrainPriorError(f"cannot resume from {ckpt}: {exc}") from None
        self.models = {
            "unet": UNet3DConditionModel.from_pretrained(str(ckpt / "unet")).float(),
            "vae": AutoencoderKL.from_pretrained(str(ckpt / "vae")).float(),
        }
        if self.cfg.text_encoder == "clip":
            self.models["text_encoder"] = CLIPTextModel.from_pretrained(str(ckpt / "text_encoder")).float()
        self.state = TrainState(**saved["state"])
        self.ema = self._load_ema(ckpt)
        log.info("resumed %s at phase %s step %d", ckpt, self.state.phase, self.state.step)

    def _initialise_from(self, folder: Path) -> None:
        """Starts the diffusion phase from an exported prior: its VAE (frozen, with its latent scale)
        and every UNet weight whose shape fits this run's UNet; the rest keep their fresh values."""
        from diffusers import AutoencoderKL, UNet3DConditionModel

        if read_resumable_state(folder) is None:
            raise TrainPriorError(f"{folder} is not an exported prior ({EXPORT_MARKER} missing)")
        try:
            source = unpacked_folder(folder, self.run_dir / "unpacked")
            unet = UNet3DConditionModel.from_pretrained(str(source / "unet")).float()
            vae = AutoencoderKL.from_pretrained(str(source / "vae")).float()
        except (PackingError, OSError, ValueError) as exc:
            raise TrainPriorError(f"cannot start from {folder}: {exc}") from None
        if tuple(vae.config.block_out_channels) != tuple(self.cfg.vae_channels):
            raise TrainPriorError(f"{folder}'s VAE has widths {list(vae.config.block_out_channels)}, this run "
                                  f"{list(self.cfg.vae_channels)}")
        own = self.models["unet"].state_dict()
        taken = {k: v for k, v in unet.state_dict().items() if k in own and own[k].shape == v.shape}
        if len(taken) < len(own) // 2:
            raise TrainPriorError(f"{folder}'s UNet shares only {len(taken)} of {len(own)} weights with this run's")
        self.models["unet"].load_state_dict(taken, strict=False)
        self.models["vae"] = vae
        self.state = TrainState(phase="diffusion", step=0)
        self.state.initialised_from = {"folder": folder.name, "step": json.loads((folder / EXPORT_MARKER).read_text()).get("step"),
                                 "unet_weights_taken": len(taken), "unet_weights": len(own)}
        log.info("started from %s: VAE and %d of %d UNet weights", folder, len(taken), len(own))

    def save_checkpoint(self) -> Path:
        """Writes ``run_dir/checkpoint`` atomically (staging folder, then rename)."""
        final = self.run_dir / "checkpoint"
        staging = self.run_dir / "checkpoint.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, model in self.models.items():
            model.save_pretrained(str(staging / name), safe_serialization=True)
        if self.ema is not None:
            from safetensors.torch import save_file
            save_file({k: v.detach().cpu().contiguous() for k, v in self.ema.items()}, str(staging / EMA_FILE))
        torch.save({"phase": self.state.phase, "state": self.optimizer.state_dict()}, staging / "optimizer.pt")
        (staging / "state.json").write_text(json.dumps({"config": self.cfg.to_json(),
                                                        "state": asdict(self.state)}) + "\n")
        old = self.run_dir / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.replace(old)
        staging.replace(final)
        shutil.rmtree(old, ignore_errors=True)
        return final

    # -- moving average of the weights ------------------------------------------------------------
    def _load_ema(self, ckpt: Path) -> dict[str, torch.Tensor] | None:
        """The checkpoint's moving average when it has one and this run keeps one; a checkpoint
        without it (or an export) starts the average from its weights at the first update."""
        if self.cfg.ema_decay <= 0 or not (ckpt / EMA_FILE).is_file():
            return None
        from safetensors.torch import load_file
        ema = load_file(str(ckpt / EMA_FILE))
        expected = {k for k, _ in diffusion_parameters(self.models)}
        if set(ema) != expected:
            raise TrainPriorError(f"{ckpt / EMA_FILE} does not match the models' parameters")
        return ema

    @torch.no_grad()
    def update_ema(self) -> None:
        """One update of the moving average towards the current weights (diffusion phase)."""
        if self.cfg.ema_decay <= 0:
            return
        params = diffusion_parameters(self.models)
        if self.ema is None:
            self.ema = {k: p.detach().float().clone() for k, p in params}
            self.state.ema_updates = 0
        n = self.state.ema_updates
        decay = min(self.cfg.ema_decay, (1 + n) / (10 + n))
        averages = [self.ema[k] for k, _ in params]
        torch._foreach_lerp_(averages, [p.detach().float() for _, p in params], 1.0 - decay)
        self.state.ema_updates = n + 1

    def exported_models(self) -> dict[str, torch.nn.Module]:
        """Copies of the models as exported: with the moving average's weights when there is one
        (the training weights stay as they are)."""
        models = {name: copy.deepcopy(model) for name, model in self.models.items()}
        if self.ema is not None:
            with torch.no_grad():
                for key, p in diffusion_parameters(models):
                    p.copy_(self.ema[key])
        return models

    # -- optimisation ------------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        if self.state.phase == "vae":
            params, lr = list(self.models["vae"].parameters()), self.cfg.vae_lr
        else:
            params = [p for _, p in diffusion_parameters(self.models)]
            lr = self.cfg.lr
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    def _batch_indices(self, count: int) -> torch.Tensor:
        return torch.randint(0, len(self.captions), (count,), generator=self.generator)

    def _frames(self, index: torch.Tensor) -> torch.Tensor:
        return self.clips[index.to(self.clips.device)].to(self.device, non_blocking=True).float() / 255.0

    @torch.no_grad()
    def _dataset_latents(self, mirrored: bool = False) -> torch.Tensor:
        """Latents of every clip (``mirrored``: of its left-right flipped frames) under the frozen VAE,
        computed once per call of the diffusion phase."""
        if mirrored not in self.latents:
            count, chunks = len(self.captions), []
            for start in range(0, count, 32):
                frames = self._frames(torch.arange(start, min(start + 32, count)))
                chunks.append(self.encode_clips(frames.flip(-1) if mirrored else frames))
            self.latents[mirrored] = torch.cat(chunks)
        return self.latents[mirrored]

    def diffusion_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """Latents ``[B, 4, T, h, w]`` and captions of clips ``index``, each flipped left-right (and its
        caption mirrored) with probability ``mirror_probability``; captions dropped to "" with
        probability ``text_dropout``."""
        latents = self._dataset_latents()[index.to(self.device)]
        captions = [self.captions[int(i)] for i in index]
        if self.cfg.mirror_probability > 0:
            flip = torch.rand(len(index), generator=self.generator) < self.cfg.mirror_probability
            if flip.any():
                mirrored = self._dataset_latents(mirrored=True)[index.to(self.device)]
                latents = torch.where(flip.to(self.device).view(-1, 1, 1, 1, 1), mirrored, latents)
                captions = [mirror_caption(c) if f else c for c, f in zip(captions, flip)]
        drop = torch.rand(len(index), generator=self.generator) < self.cfg.text_dropout
        return latents, ["" if d else c for c, d in zip(captions, drop)]

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    def vae_step(self) -> float:
        vae = self.models["vae"].train()
        clip_index = self._batch_indices(self.cfg.vae_batch_frames)
        frame_index = torch.randint(0, self.cfg.frames, (self.cfg.vae_batch_frames,), generator=self.generator)
        images = self._frames(clip_index)[torch.arange(len(clip_index)), frame_index].to(self.device) * 2 - 1
        with self._autocast():
            posterior = vae.encode(images).latent_dist
            recon = vae.decode(posterior.sample()).sample
        recon = recon.float()
        loss = F.l1_loss(recon, images) + F.mse_loss(recon, images) + 1e-6 * posterior.kl().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        self.optimizer.step()
        return loss.item()

    @torch.no_grad()
    def encode_clips(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [B, T, 3, H, W] in [0, 1] → scaled latents [B, 4, T, h, w] (posterior mean)."""
        vae = self.models["vae"].eval()
        b, t = frames.shape[:2]
        with self._autocast():
            lat = vae.encode(frames.reshape(b * t, *frames.shape[2:]) * 2 - 1).latent_dist.mean
        lat = lat.float() * float(vae.config.scaling_factor)
        return lat.reshape(b, t, *lat.shape[1:]).permute(0, 2, 1, 3, 4)

    def _start_diffusion(self) -> None:
        """Freeze the VAE, set its scaling factor to 1/std of the data latents, switch optimiser."""
        vae = self.models["vae"]
        vae.register_to_config(scaling_factor=1.0)
        sample = self.encode_clips(self._frames(self._batch_indices(min(64, len(self.captions)))))
        vae.register_to_config(scaling_factor=float(1.0 / sample.std().clamp_min(1e-3)))
        log.info("vae scaling factor %.4f", vae.config.scaling_factor)
        self.state.phase, self.state.step = "diffusion", 0
        self.latents = {}
        self.optimizer = self._make_optimizer()

    def _encode_text(self, captions: list[str]) -> torch.Tensor:
        if self.text is not None:
            return self.text.states(captions)
        tokens = self.tokenizer(captions, padding="max_length", max_length=MAX_TEXT_LENGTH, truncation=True,
                                return_tensors="pt").input_ids.to(self.device)
        return self.models["text_encoder"](tokens)[0]

    def diffusion_step(self) -> float:
        unet = self.models["unet"].train()
        if "text_encoder" in self.models:
            self.models["text_encoder"].train()
        index = self._batch_indices(self.cfg.batch_size)
        latents, captions = self.diffusion_batch(index)
        noise = torch.randn(latents.shape, generator=self.generator).to(self.device)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(index),), generator=self.generator)
        t = t.to(self.device)
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        with self._autocast():
            states = self._encode_text(captions)
            eps = unet(noisy, t, encoder_hidden_states=states, return_dict=False)[0]
        if self.cfg.motion_weight > 0:
            weights = motion_loss_weights(latents, self.cfg.motion_weight)
            loss = ((eps.float() - noise) ** 2 * weights).mean() / weights.mean()
        else:
            loss = F.mse_loss(eps.float(), noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in diffusion_parameters(self.models)], 1.0)
        self.optimizer.step()
        self.update_ema()
        return loss.item()

    def train(self, minutes: float | None = None, max_steps: int | None = None,
              diffusion_steps: int | None = None) -> TrainState:
        """Trains until ``minutes`` of wall time (from now) or ``max_steps`` steps of this call pass
        (or ``diffusion_steps`` diffusion steps in total); checkpoints periodically and at the end."""
        if self.clips is None:
            clips, self.captions = load_or_render_dataset(self.run_dir, self.cfg, str(self.device),
                                                           self.render_backend)
            self.clips = clips.to(self.device)  # uint8: ~0.5 GB for the default dataset
            if self.text is not None:  # every caption's states once (mirrored ones and "" too)
                self.text.states(sorted(set(self.captions) | {mirror_caption(c) for c in self.captions} | {""}))
        start = time.perf_counter()
        deadline = start + minutes * 60 if minutes else math.inf
        last_ckpt = start
        done = 0
        segment = self._open_history_entry()

        def checkpoint() -> None:  # the clock, this call's history entry, then the files
            nonlocal last_ckpt
            now = time.perf_counter()
            self.state.total_seconds += now - last_ckpt
            last_ckpt = now
            segment["to"], segment["seconds"] = [self.state.phase, self.state.step], round(now - start, 1)
            self.save_checkpoint()

        while time.perf_counter() < deadline and (max_steps is None or done < max_steps):
            if diffusion_steps is not None and self.state.phase == "diffusion" and self.state.step >= diffusion_steps:
                break
            if self.state.phase == "vae" and self.state.step >= self.cfg.vae_steps:
                self._start_diffusion()
            loss = self.vae_step() if self.state.phase == "vae" else self.diffusion_step()
            self.state.step += 1
            done += 1
            if self.state.step % 50 == 0 or done == 1:
                self.state.losses.append((self.state.phase, self.state.step, round(loss, 5)))
                log.info("%s step %d loss %.4f", self.state.phase, self.state.step, loss)
            if time.perf_counter() - last_ckpt > self.cfg.checkpoint_minutes * 60:
                checkpoint()
        checkpoint()
        return self.state

    def _open_history_entry(self) -> dict:
        """This call's entry in ``state.history`` (kept in every checkpoint and export), so a prior
        says how it was trained when its settings changed between calls."""
        entry = {"from": [self.state.phase, self.state.step], "to": [self.state.phase, self.state.step],
                 "seconds": 0.0, "device": self.device.type,
                 **{name: getattr(self.cfg, name) for name in HISTORY_SETTINGS}}
        self.state.history.append(entry)
        return entry

    # -- export ------------------------------------------------------------------------------------
    def export(self, folder: str | Path, dtype: torch.dtype = torch.float16,
               limit_bytes: int = EXPORT_LIMIT_BYTES) -> Path:
        """Writes the diffusers folder the prior loader reads, in fp16; when that is over
        ``limit_bytes`` the weights are stored in 8 bits (``priors.packing``; the loader restores
        them). Still over the limit: TrainPriorError, and nothing is written."""
        import diffusers

        from animus3d_worker.priors.packing import PACKABLE, pack_component

        folder = Path(folder)
        staging = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, model in self.exported_models().items():
            model.to(dtype).save_pretrained(str(staging / name), safe_serialization=True)
        if self.text is not None:  # the worker loads the packaged encoder these files name
            minilm.write_packaged_reference(staging, self.cfg.text_length)
            text_classes = {"text_encoder": ["transformers", "BertModel"],
                            "tokenizer": ["transformers", "BertTokenizerFast"]}
        else:
            self.tokenizer.save_pretrained(str(staging / "tokenizer"))
            text_classes = {"text_encoder": ["transformers", "CLIPTextModel"],
                            "tokenizer": ["transformers", "CLIPTokenizer"]}
        self.scheduler.save_pretrained(str(staging / "scheduler"))
        index = {
            "_class_name": "TextToVideoSDPipeline", "_diffusers_version": diffusers.__version__,
            "scheduler": ["diffusers", "DDIMScheduler"], **text_classes,
            "unet": ["diffusers", "UNet3DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        }
        (staging / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        (staging / LEARNT_MOTIONS).write_text(json.dumps(learnt_motions_document(), indent=2) + "\n")

        def size() -> int:
            return sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())

        def write_marker(weights: str) -> None:
            (staging / EXPORT_MARKER).write_text(json.dumps({
                "trained_on": "animus3d synthetic motion clips", "config": self.cfg.to_json(),
                "phase": self.state.phase, "step": self.state.step, "seconds": round(self.state.total_seconds, 1),
                "resolution": self.cfg.resolution, "frames": self.cfg.frames, "weights": weights,
                "averaged_weights": self.ema is not None, "initialised_from": self.state.initialised_from,
                "history": self.state.history}, indent=2) + "\n")

        plain_weights = str(dtype).removeprefix("torch.")
        write_marker(plain_weights)
        plain_size = size()
        if plain_size > limit_bytes:
            for component in PACKABLE:
                pack_component(staging / component)
            write_marker("int8")
            log.info("export is %.1f MiB in %s; weights stored in 8 bits: %.1f MiB", plain_size / 2**20,
                     plain_weights, size() / 2**20)
        total = size()
        if total > limit_bytes:
            shutil.rmtree(staging, ignore_errors=True)
            raise TrainPriorError(f"export is {total / 2**20:.1f} MiB even with 8-bit weights, over the "
                                  f"{limit_bytes / 2**20:.1f} MiB limit: shrink the model")
        shutil.rmtree(folder, ignore_errors=True)
        staging.replace(folder)
        return folder


def small_test_config(**overrides) -> TrainConfig:
    """A tiny configuration for CPU tests (seconds): few small clips, small models."""
    base = TrainConfig(clips=4, frames=4, resolution=32, gaussians=300, unet_channels=(16, 32), unet_heads=2,
                       vae_channels=(16, 16), text_hidden=32, text_layers=1, batch_size=2, vae_batch_frames=4,
                       vae_steps=2, checkpoint_minutes=100.0, text_encoder="clip")
    return replace(base, **overrides)
