"""Which video models a worker uses: configuration as data, read from the worker's own file.

A client can never name a path: jobs only choose among what this configuration lists.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path


class ModelConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ModelConfig:
    # A prior spec is "tiny", "embedded" (the trained default shipped with the package, once it
    # exists), a local diffusers folder, or a Hugging Face id (e.g. "damo-vilab/text-to-video-ms-1.7b").
    motion_prior: str = "embedded"
    refine_prior: str | None = None  # None: refine with the motion prior
    dtype: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU), "float32", "float16", "bfloat16"
    lora_cache_dir: str | None = None  # default: ~/.cache/animus3d/lora

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ModelConfigError(f"cannot read model config {path}: {exc.strerror or exc}") from None
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ModelConfigError(f"model config {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        if not isinstance(data, dict):
            raise ModelConfigError("model config must be a table/object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelConfigError(f"unknown model config key(s): {', '.join(unknown)}")
        for key, value in data.items():
            if value is not None and not isinstance(value, str):
                raise ModelConfigError(f"model config {key!r} must be a string")
        config = cls(**data)
        if config.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ModelConfigError(f"dtype must be auto, float32, float16 or bfloat16, not {config.dtype!r}")
        return config

    def describe(self) -> dict[str, str]:
        """What WELCOME/STATUS report: model roles to specs (never secrets)."""
        return {"motion_prior": self.motion_prior, "refine_prior": self.refine_prior or self.motion_prior}
