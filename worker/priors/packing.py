"""8-bit weight storage for a diffusers folder, so a larger trained prior fits its size budget.

A packed component folder (``unet/``, ``vae/``, ``text_encoder/``) holds ``PACKED_FILE`` instead of
its safetensors weights: every floating-point matrix or convolution kernel of at least
``MIN_PACKED_NUMEL`` values as int8 with one float32 scale per output row (symmetric absmax
quantisation, error at most half a step per value), the rest unchanged. The name of the original
weights file travels in the file's metadata.

Nothing downstream reads the packed form: ``unpacked_folder`` restores a plain fp16 diffusers folder
once into the cache (keyed by the folder's contents) and the prior loads from there through the
same code as any ModelScope or ZeroScope checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

PACKED_FILE = "animus3d_int8.safetensors"
FORMAT = "animus3d-int8-v1"
SCALE_SUFFIX = ".__int8_scale"
MIN_PACKED_NUMEL = 4096
PACKABLE = ("unet", "vae", "text_encoder")


class PackingError(ValueError):
    """A packed weights file that cannot be read back (corrupt, another format, inconsistent)."""


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` [out, ...] → (int8 of the same shape, float32 scale per output row [out])."""
    rows = weight.detach().float().reshape(weight.shape[0], -1)
    scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(rows / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.reshape(weight.shape), scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    return (q.float() * scale.reshape(-1, *([1] * (q.dim() - 1)))).to(dtype)


def _weights_file(component: Path) -> Path:
    files = sorted(component.glob("*.safetensors"))
    files = [f for f in files if f.name != PACKED_FILE]
    if len(files) != 1:
        raise PackingError(f"{component} has {len(files)} safetensors weight files; packing needs exactly one")
    return files[0]


def pack_component(component: str | Path) -> int:
    """Replaces the component folder's safetensors weights by ``PACKED_FILE``; returns its size in bytes."""
    from safetensors.torch import load_file, save_file

    component = Path(component)
    source = _weights_file(component)
    packed: dict[str, torch.Tensor] = {}
    for name, tensor in load_file(str(source)).items():
        if SCALE_SUFFIX in name:
            raise PackingError(f"{source}: tensor name {name!r} clashes with the packed format")
        if tensor.is_floating_point() and tensor.dim() >= 2 and tensor.numel() >= MIN_PACKED_NUMEL:
            packed[name], packed[name + SCALE_SUFFIX] = quantize_rows(tensor)
        else:
            packed[name] = tensor.contiguous()
    target = component / PACKED_FILE
    save_file(packed, str(target), metadata={"format": FORMAT, "original": source.name})
    source.unlink()
    return target.stat().st_size


def unpack_component(source: str | Path, target: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Writes the plain safetensors weights of packed component folder ``source`` into folder ``target``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = Path(source) / PACKED_FILE
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise PackingError(f"cannot read packed weights {path}: {exc}") from None
    original = metadata.get("original", "")
    if metadata.get("format") != FORMAT or not original.endswith(".safetensors") or "/" in original:
        raise PackingError(f"{path} is not an {FORMAT} file (metadata {metadata})")
    weights: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = tensors.get(name + SCALE_SUFFIX)
        if tensor.dtype == torch.int8:
            if scale is None or scale.numel() != tensor.shape[0]:
                raise PackingError(f"{path}: int8 tensor {name!r} has no matching row scales")
            weights[name] = dequantize_rows(tensor, scale, dtype)
        else:
            weights[name] = tensor
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(target / original))
    return target / original


def packed_components(folder: str | Path) -> list[str]:
    folder = Path(folder)
    return [c for c in PACKABLE if (folder / c / PACKED_FILE).is_file()]


def unpacked_folder(folder: str | Path, cache: str | Path) -> Path:
    """``folder`` itself when nothing in it is packed; else a plain copy with the weights restored,
    made once under ``cache`` (atomically: a staging folder, then a rename) and reused afterwards."""
    folder = Path(folder)
    packed = packed_components(folder)
    if not packed:
        return folder
    digest = hashlib.sha256()  # over every file, so an edited config is a new copy too
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(path.read_bytes())
    final = Path(cache) / "unpacked-priors" / digest.hexdigest()[:20]
    if (final / "model_index.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=final.parent))
    try:
        shutil.copytree(folder, staging / "prior", ignore=shutil.ignore_patterns(PACKED_FILE))
        for component in packed:
            unpack_component(folder / component, staging / "prior" / component)
        try:
            os.replace(staging / "prior", final)
        except OSError:
            if not (final / "model_index.json").is_file():  # not a finished copy from a concurrent load
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
