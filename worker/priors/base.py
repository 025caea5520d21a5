"""The VideoPrior interface: a frozen latent video diffusion model the stages query.

A prior wraps diffusers/transformers components (UNet, VAE, text encoder, tokenizer, scheduler)
and offers the few operations Animus3D needs, in its layouts:

- frames ``[B, F, 3, H, W]`` in [0, 1];
- latents ``[B, C, F, h, w]`` already multiplied by ``vae.config.scaling_factor``;
- text embeddings ``[B, 77, D]``;
- timesteps: an int or a long tensor ``[B]`` (or ``[1]``, broadcast).

For classifier-free guidance, ``ddim_invert``/``ddim_sample`` take ``2B`` text embeddings:
the conditional ones first, then the unconditional ones.
"""

from __future__ import annotations

import contextlib

import torch

from . import ddim
from . import lora as lora_ops


class PriorLoadError(RuntimeError):
    """A prior could not be loaded (missing folder or component, hub unreachable, bad spec)."""


class VideoPrior:
    """A frozen text-to-video latent diffusion model (eval mode, no parameter requires grad)."""

    def __init__(self, name: str, unet, vae, text_encoder, tokenizer, scheduler,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.name = name
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.device = torch.device(device)
        self.dtype = dtype
        for module in (unet, vae, text_encoder):
            if any(p.dtype != dtype for p in module.parameters()):
                module.to(dtype=dtype)
            module.to(device=self.device)
            module.requires_grad_(False)
            module.eval()
        self.latent_channels = int(vae.config.latent_channels)
        if int(unet.config.in_channels) != self.latent_channels:
            raise PriorLoadError(f"{name}: UNet takes {unet.config.in_channels} channels but the VAE makes "
                                 f"{self.latent_channels}")
        self.spatial_downsample = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.alphas_cumprod = scheduler.alphas_cumprod.to(device=self.device, dtype=torch.float32)
        self.max_text_length = int(getattr(tokenizer, "model_max_length", 77))
        if self.max_text_length > 1024:  # tokenizers without a configured length report a huge sentinel
            self.max_text_length = 77
        self._text_cache: dict[str, torch.Tensor] = {}
        self.native_resolution: int | None = None  # the frame size it was trained at, when its folder says
        self.folder = None  # the local folder it was loaded from (a pathlib.Path), None for a hub id
        self.graphs = None  # a cuda_graphs.UNetGraphs while graph replay is on (see ``graphed``)

    def with_unet(self, unet) -> "VideoPrior":
        """The same prior (VAE, text encoder, scheduler, text cache) with another UNet, e.g. a
        LoRA-merged copy that represents the static object."""
        import copy

        view = copy.copy(self)
        view.unet = unet
        return view

    @contextlib.contextmanager
    def graphed(self, *others: "VideoPrior"):
        """Within the block, no-grad forwards of UNets without LoRA layers replay CUDA graphs (on a
        GPU; elsewhere this does nothing). ``others`` (e.g. a LoRA-merged view) share the cache. The
        UNets must stay frozen inside the block; the graphs are freed on exit."""
        from .cuda_graphs import UNetGraphs

        priors = (self, *others)
        if self.device.type != "cuda":
            yield None
            return
        cache = UNetGraphs()
        before = [p.graphs for p in priors]
        for p in priors:
            p.graphs = cache
        try:
            yield cache
        finally:
            for p, b in zip(priors, before):
                p.graphs = b
            cache.clear()

    def __repr__(self) -> str:
        return f"VideoPrior({self.name!r}, device={self.device}, dtype={self.dtype})"

    # ---- text ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """The text encoder's token states ``[len(prompts), L, D]`` (L and D are the encoder's: 77 × 1024 for
        ModelScope's CLIP, 32 × 384 for the embedded prior's MiniLM; cached per prompt string)."""
        if isinstance(prompts, str):
            raise TypeError("encode_text takes a list of prompts, not a single string")
        if not prompts:
            raise ValueError("encode_text needs at least one prompt")
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing:
            tokens = self.tokenizer(missing, padding="max_length", max_length=self.max_text_length,
                                    truncation=True, return_tensors="pt")
            hidden = self.text_encoder(tokens.input_ids.to(self.device))[0].to(self.dtype)
            for prompt, row in zip(missing, hidden):
                self._text_cache[prompt] = row
        return torch.stack([self._text_cache[p] for p in prompts])

    # ---- frames <-> latents ----------------------------------------------------------------------
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, F, 3, H, W]`` in [0, 1] → scaled latents ``[B, C, F, H/8, W/8]``.

        Uses the posterior mean (deterministic) and is differentiable w.r.t. ``frames``.
        """
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B, F, 3, H, W], got {tuple(frames.shape)}")
        b, f, _, h, w = frames.shape
        if h % self.spatial_downsample or w % self.spatial_downsample:
            raise ValueError(f"frame size {h}x{w} must be a multiple of {self.spatial_downsample}")
        images = frames.reshape(b * f, 3, h, w).to(device=self.device, dtype=self.dtype) * 2.0 - 1.0
        latents = self.vae.encode(images).latent_dist.mean * self.scaling_factor
        return latents.reshape(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[B, C, F, h, w]`` → frames ``[B, F, 3, 8h, 8w]`` in [0, 1]."""
        if latents.dim() != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"latents must be [B, {self.latent_channels}, F, h, w], got {tuple(latents.shape)}")
        b, c, f, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w).to(device=self.device, dtype=self.dtype)
        images = self.vae.decode(flat / self.scaling_factor).sample
        frames = ((images + 1.0) / 2.0).clamp(0.0, 1.0)
        return frames.reshape(b, f, *frames.shape[1:])

    # ---- diffusion ----------------------------------------------------------------------------
    def _timesteps(self, timesteps, batch: int) -> torch.Tensor:
        if isinstance(timesteps, int):  # a fill kernel: no host-to-device copy, so no stream sync
            t = torch.full((1,), timesteps, device=self.device, dtype=torch.long)
        else:
            t = torch.as_tensor(timesteps, device=self.device).long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ValueError(f"got {t.numel()} timesteps for a batch of {batch}")
        return t

    def predict_noise(self, latents: torch.Tensor, timesteps, text_embeddings: torch.Tensor,
                      lora: bool = False) -> torch.Tensor:
        """ε̂ for ``latents`` ``[B, C, F, h, w]`` in one batched UNet forward (latents' dtype).

        ``lora=True`` runs with the injected LoRA layers on, ``lora=False`` with them off; the LoRA
        state is restored afterwards. Gradients flow if the caller enables them.
        """
        b = latents.shape[0]
        if text_embeddings.shape[0] == 1 and b > 1:
            text_embeddings = text_embeddings.expand(b, -1, -1)
        if text_embeddings.shape[0] != b:
            raise ValueError(f"got {text_embeddings.shape[0]} text embeddings for a batch of {b}")
        t = self._timesteps(timesteps, b)
        if self.graphs is not None and not lora and self.graphs.usable(latents) and not lora_ops.has_lora(self.unet):
            eps = self.graphs.forward(self.unet, latents.to(self.dtype), t, text_embeddings.to(self.dtype))
            return eps.to(latents.dtype)
        with lora_ops.lora_switched(self.unet, lora):
            eps = self.unet(latents.to(self.dtype), t, encoder_hidden_states=text_embeddings.to(self.dtype),
                            return_dict=False)[0]
        return eps.to(latents.dtype)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """Forward process: √ᾱ_t·latents + √(1−ᾱ_t)·noise (latents' dtype)."""
        t = self._timesteps(timesteps, latents.shape[0])
        alpha = self.alphas_cumprod.to(latents.device)[t].reshape(-1, *([1] * (latents.dim() - 1)))
        noisy = alpha.sqrt() * latents.float() + (1.0 - alpha).sqrt() * noise.float()
        return noisy.to(latents.dtype)

    def _guided_eps_fn(self, text_embeddings: torch.Tensor, batch: int, lora: bool, guidance_scale: float):
        rows = text_embeddings.shape[0]
        if rows == 2 * batch:
            cond, uncond = text_embeddings[:batch], text_embeddings[batch:]
            if guidance_scale == 1.0:
                return lambda x, t: self.predict_noise(x, t, cond, lora=lora)

            def guided(x: torch.Tensor, t: int) -> torch.Tensor:
                both = self.predict_noise(torch.cat([x, x]), t, text_embeddings, lora=lora)
                e_cond, e_uncond = both[:batch], both[batch:]
                return e_uncond + guidance_scale * (e_cond - e_uncond)

            return guided
        if rows in (1, batch):
            if guidance_scale != 1.0:
                raise ValueError(f"guidance_scale {guidance_scale} needs 2B text embeddings "
                                 f"(conditional then unconditional), got {rows} for a batch of {batch}")
            return lambda x, t: self.predict_noise(x, t, text_embeddings, lora=lora)
        raise ValueError(f"got {rows} text embeddings for a batch of {batch} (expected {batch} or {2 * batch})")

    @torch.no_grad()
    def ddim_invert(self, latents: torch.Tensor, text_embeddings: torch.Tensor, t_end: int, steps: int,
                    lora: bool = False, guidance_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic DDIM inversion of clean ``latents`` to timestep ``t_end`` in ``steps`` steps.

        Returns ``(x_t, eps)`` with ``eps = (x_t − √ᾱ_t·latents)/√(1−ᾱ_t)``, the noise that
        ``add_noise(latents, eps, t_end)`` would need to give ``x_t``.
        """
        t_end = int(t_end)
        eps_fn = self._guided_eps_fn(text_embeddings, latents.shape[0], lora, float(guidance_scale))
        x_t = ddim.invert(eps_fn, latents, self.alphas_cumprod, t_end, int(steps))
        return x_t, ddim.implied_noise(x_t, latents, self.alphas_cumprod[t_end])

    @torch.no_grad()
    def ddim_sample(self, x_t: torch.Tensor, text_embeddings: torch.Tensor, t_start: int, steps: int,
                    lora: bool = False, guidance_scale: float = 1.0,
                    anchor: ddim.Anchor | None = None) -> torch.Tensor:
        """Deterministic DDIM sampling from ``x_t`` at ``t_start`` to clean latents in ``steps`` steps
        (``anchor``: known frames held fixed, ``ddim.leading_frames_anchor``)."""
        eps_fn = self._guided_eps_fn(text_embeddings, x_t.shape[0], lora, float(guidance_scale))
        return ddim.sample(eps_fn, x_t, self.alphas_cumprod, int(t_start), int(steps), anchor=anchor)
