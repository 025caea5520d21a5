"""CUDA-graph replay of a frozen UNet's no-grad forward.

On a GPU a UNet3D forward at MSD's shapes is bound by kernel launches, not by the kernels: the CPU
issues a few thousand small kernels per forward and the GPU waits on it. MSD queries frozen UNets
(the base model, and its LoRA-merged copy) many times per step at a handful of fixed shapes, so each
(UNet, input signature) is captured once into a CUDA graph and replayed: one launch per forward.

Rules that keep a replay equal to an eager forward:
- only no-grad forwards of UNets whose weights do not change while the cache is alive (frozen
  priors; never a UNet with LoRA layers that are being trained or toggled);
- inputs are copied into the graph's static tensors, the output is cloned out of it;
- the cache is dropped (``UNetGraphs.clear``) before any captured UNet is modified or freed.

If a capture fails (an op that cannot be captured), that signature falls back to eager forwards and
the failure is logged once; a job never fails because of a graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger("animus3d.cuda_graphs")

WARMUP_FORWARDS = 2  # on a side stream before capture, as PyTorch's graph docs require


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    sample: torch.Tensor
    timesteps: torch.Tensor
    text: torch.Tensor
    output: torch.Tensor


class UNetGraphs:
    """One CUDA graph per (UNet, sample shape, text shape, dtype); see the module docstring."""

    def __init__(self) -> None:
        self._entries: dict[tuple, _Captured | None] = {}  # None: capture failed, run eager
        self._unets: dict[int, torch.nn.Module] = {}  # holds the UNets so their ids stay unique
        self.captures = 0
        self.replays = 0

    @staticmethod
    def usable(sample: torch.Tensor) -> bool:
        return sample.is_cuda and not torch.is_grad_enabled()

    def forward(self, unet: torch.nn.Module, sample: torch.Tensor, timesteps: torch.Tensor,
                text: torch.Tensor) -> torch.Tensor:
        """``unet(sample, timesteps, encoder_hidden_states=text)`` → ε, replayed from a graph."""
        key = (id(unet), tuple(sample.shape), sample.dtype, tuple(timesteps.shape), tuple(text.shape), text.dtype,
               sample.device)
        if key not in self._entries:
            self._unets[id(unet)] = unet
            self._entries[key] = self._capture(unet, sample, timesteps, text)
        entry = self._entries[key]
        if entry is None:
            return _eager(unet, sample, timesteps, text)
        entry.sample.copy_(sample)
        entry.timesteps.copy_(timesteps)
        entry.text.copy_(text)
        entry.graph.replay()
        self.replays += 1
        return entry.output.clone()

    def _capture(self, unet, sample, timesteps, text) -> _Captured | None:
        static_sample = sample.detach().clone()
        static_t = timesteps.detach().clone().contiguous()
        static_text = text.detach().clone().contiguous()
        try:
            side = torch.cuda.Stream(device=sample.device)
            side.wait_stream(torch.cuda.current_stream(sample.device))
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(WARMUP_FORWARDS):
                    _eager(unet, static_sample, static_t, static_text)
            torch.cuda.current_stream(sample.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(graph):
                output = _eager(unet, static_sample, static_t, static_text)
        except Exception as exc:  # noqa: BLE001 - any capture failure means "run this one eagerly"
            log.warning("CUDA graph capture failed for sample %s (%s: %s); running eagerly",
                        tuple(sample.shape), type(exc).__name__, exc)
            torch.cuda.synchronize(sample.device)
            return None
        self.captures += 1
        log.info("captured a CUDA graph of %s for sample %s", type(unet).__name__, tuple(sample.shape))
        return _Captured(graph, static_sample, static_t, static_text, output)

    def clear(self) -> None:
        """Frees every graph (call before a captured UNet changes or is freed)."""
        self._entries.clear()
        self._unets.clear()


def _eager(unet, sample, timesteps, text) -> torch.Tensor:
    return unet(sample, timesteps, encoder_hidden_states=text, return_dict=False)[0]


class _UNetEps(torch.nn.Module):
    """``unet(sample, t, text) → ε`` as a module of tensors only (what graph capture takes)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return _eager(self.unet, sample, timesteps, text)


def graphed_training_forward(unet: torch.nn.Module, sample: torch.Tensor, timesteps: torch.Tensor,
                             text: torch.Tensor):
    """A callable ``(sample, t, text) → ε`` whose forward and backward replay CUDA graphs
    (``torch.cuda.make_graphed_callables``), for training the LoRA of a UNet at one fixed input
    signature: gradients reach the trainable parameters (the LoRA) as in eager mode. The LoRA
    layers' on/off state and the set of trainable parameters must not change while it is in use.
    Returns ``None`` (train eagerly) when capture fails or there is no GPU."""
    if not sample.is_cuda:
        return None
    try:
        module = _UNetEps(unet)
        graphed = torch.cuda.make_graphed_callables(
            module, (sample.detach().clone(), timesteps.detach().clone().contiguous(), text.detach().clone().contiguous()))
    except Exception as exc:  # noqa: BLE001 - fall back to eager training
        log.warning("CUDA graph capture of the LoRA training step failed (%s: %s); training eagerly",
                    type(exc).__name__, exc)
        torch.cuda.synchronize(sample.device)
        return None
    log.info("captured the LoRA training forward/backward for sample %s", tuple(sample.shape))
    return graphed
