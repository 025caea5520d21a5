"""LoRA on a video UNet's attention projections, through peft's ``inject_adapter_in_model``.

``UNet3DConditionModel`` has no ``add_adapter``, so adapters are injected directly. Enabling and
disabling (``set_lora_enabled``) never changes which parameters are trainable: that is decided once,
by ``inject_lora``. ``remove_lora`` puts the original layers back. A job injects its LoRA into a copy
of the cached UNet that shares its frozen weights (``shared_weight_copy``), never into the cached UNet
itself.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

ADAPTER = "default"
_PROJECTIONS = r"(to_q|to_k|to_v|to_out\.0)"
# Module-name patterns (peft full-matches a string target against each module name).
TARGETS = {
    # Spatial attention in every block and temporal attention (temp_attentions and transformer_in).
    "attention": rf"(.*\.)?(attentions|temp_attentions)\.\d+\.transformer_blocks\.\d+\.attn\d\.{_PROJECTIONS}"
    rf"|transformer_in\.transformer_blocks\.\d+\.attn\d\.{_PROJECTIONS}",
    "spatial": rf"(.*\.)?attentions\.\d+\.transformer_blocks\.\d+\.attn\d\.{_PROJECTIONS}",
    "temporal": rf"(.*\.)?temp_attentions\.\d+\.transformer_blocks\.\d+\.attn\d\.{_PROJECTIONS}"
    rf"|transformer_in\.transformer_blocks\.\d+\.attn\d\.{_PROJECTIONS}",
}


class LoraError(ValueError):
    """Bad LoRA request or a state dict that does not fit the injected layers."""


def _tuner_layers(model: nn.Module) -> list[nn.Module]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def has_lora(model: nn.Module) -> bool:
    """True when LoRA layers are injected in ``model``."""
    return bool(_tuner_layers(model))


def inject_lora(model: nn.Module, rank: int = 16, alpha: float = 16.0, target: str = "attention") -> list[nn.Parameter]:
    """Injects LoRA (B zero-initialised, so the model is unchanged) into ``model``'s attention.

    ``target`` is "attention" (spatial + temporal), "spatial" or "temporal". Every base parameter is
    frozen; the returned LoRA parameters are the only trainable ones. LoRA weights are kept in float32
    when the model is half precision (peft casts activations to them).
    """
    from peft import LoraConfig, inject_adapter_in_model

    if target not in TARGETS:
        raise LoraError(f"unknown LoRA target {target!r}; choose one of {', '.join(TARGETS)}")
    if int(rank) < 1:
        raise LoraError(f"LoRA rank must be >= 1, got {rank}")
    if has_lora(model):
        raise LoraError("model already has LoRA layers; call remove_lora first")
    model.requires_grad_(False)
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha), lora_dropout=0.0, init_lora_weights=True,
                        target_modules=TARGETS[target], bias="none")
    inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    if not has_lora(model):
        raise LoraError(f"LoRA target {target!r} matched no module of {type(model).__name__}")
    params = []
    for name, param in model.named_parameters():
        if ".lora_" in name:
            if param.dtype in (torch.float16, torch.bfloat16):
                param.data = param.data.float()
            param.requires_grad_(True)
            params.append(param)
        else:
            param.requires_grad_(False)
    set_lora_enabled(model, True)
    return params


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The injected LoRA parameters by name (empty when there is none)."""
    return {name: p for name, p in model.named_parameters() if ".lora_" in name}


def set_lora_enabled(model: nn.Module, enabled: bool) -> None:
    """Turns the injected LoRA layers on or off (no-op without LoRA); trainability is left as it was."""
    params = lora_parameters(model)
    trainable = {name: p.requires_grad for name, p in params.items()}
    for layer in _tuner_layers(model):
        layer.enable_adapters(bool(enabled))
    for name, p in params.items():
        p.requires_grad_(trainable[name])


def lora_enabled(model: nn.Module) -> bool:
    """True when LoRA layers exist and are on."""
    layers = _tuner_layers(model)
    return bool(layers) and not any(layer.disable_adapters for layer in layers)


@contextlib.contextmanager
def lora_switched(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Within the block LoRA is on (or off); afterwards it is as it was."""
    if not has_lora(model):
        if enabled:
            raise LoraError("LoRA requested but none is injected; call lora.inject_lora first")
        yield
        return
    before = lora_enabled(model)
    if before == bool(enabled):
        yield
        return
    set_lora_enabled(model, enabled)
    try:
        yield
    finally:
        set_lora_enabled(model, before)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA weights by parameter name, detached (what ``load_lora_state_dict`` takes)."""
    return {name: p.detach().clone() for name, p in lora_parameters(model).items()}


def load_lora_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Copies LoRA weights into the injected layers; the keys and shapes must match exactly."""
    params = lora_parameters(model)
    if not params:
        raise LoraError("model has no LoRA layers; call inject_lora before loading LoRA weights")
    missing = sorted(set(params) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(params))
    if missing or unexpected:
        raise LoraError(f"LoRA state dict does not fit: {len(missing)} missing (e.g. {missing[:1]}), "
                        f"{len(unexpected)} unexpected (e.g. {unexpected[:1]})")
    for name, p in params.items():
        value = state_dict[name]
        if tuple(value.shape) != tuple(p.shape):
            raise LoraError(f"LoRA weight {name} has shape {tuple(value.shape)}, expected {tuple(p.shape)}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state_dict[name].to(device=p.device, dtype=p.dtype))


def remove_lora(model: nn.Module) -> None:
    """Replaces every LoRA layer by its original base layer (no-op without LoRA); base stays frozen."""
    layers = set(map(id, _tuner_layers(model)))
    if not layers:
        return
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if id(child) in layers:
                setattr(parent, child_name, child.get_base_layer())
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if attr in vars(model):
            delattr(model, attr)
    model.requires_grad_(False)


def shared_weight_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s modules that shares its (frozen) weights and buffers: a LoRA injected into
    the copy wraps the copy's layers only, and costs only the LoRA's own weights."""
    import copy

    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo=shared)


def merged_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` with its LoRA folded into the base weights (plain layers only).

    Forwards through the copy cost what the base model costs: on a GPU a UNet3D forward is bound by
    kernel launches, and peft's LoRA branches add thousands of small ones (measured on an H100:
    batch-1 bf16 forward 68 ms plain, 97–110 ms with LoRA layers).
    """
    import copy

    from peft.tuners.lora import LoraLayer

    if not has_lora(model):
        raise LoraError("no LoRA to merge; call inject_lora first")
    clone = copy.deepcopy(model)
    for name, module in list(clone.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, attr = name.rpartition(".")
            parent = clone.get_submodule(parent_name) if parent_name else clone
            setattr(parent, attr, module.get_base_layer())
    clone.requires_grad_(False)
    clone.eval()
    return clone
