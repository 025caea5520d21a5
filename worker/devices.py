"""The one device and dtype resolver of the worker: "auto", "cpu", "cuda", "cuda:N"."""

from __future__ import annotations

import torch


class DeviceError(ValueError, RuntimeError):
    """A device this machine does not have, or a string that names none (one line for the user)."""


def device_name(device: str = "auto") -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` resolved to a device this machine has."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    name, _, index = device.partition(":")
    if name != "cuda" or (index and not index.isdigit()):
        raise DeviceError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {device} was requested but this machine has no usable CUDA device")
    if index and int(index) >= torch.cuda.device_count():
        raise DeviceError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve_device(device: str = "auto") -> torch.device:
    return torch.device(device_name(device))


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
