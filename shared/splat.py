"""The Gaussian-splat container: one typed, validated set of float32 arrays.

Conventions (the INRIA 3DGS ones, so PLY files map one to one):

- ``means``      [N, 3] world positions;
- ``quats``      [N, 4] rotations as (w, x, y, z), not necessarily normalised (PLY ``rot_0..3``);
- ``log_scales`` [N, 3] natural-log scales (PLY ``scale_0..2``);
- ``opacity_logits`` [N] pre-sigmoid opacities (PLY ``opacity``);
- ``sh_dc``      [N, 3] degree-0 spherical-harmonic coefficients (PLY ``f_dc_0..2``);
- ``sh_rest``    [N, K, 3] higher-order coefficients, K = (degree + 1)² − 1 ∈ {0, 3, 8, 15}.
  In PLY they are stored channel-major: ``f_rest_{c*K + k}`` holds ``sh_rest[:, k, c]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .arrays import all_finite

SH_C0 = 0.28209479177387814  # the degree-0 SH basis constant
REST_COUNTS = {0: 0, 1: 3, 2: 8, 3: 15}  # SH degree -> number of higher-order coefficients
DEFAULT_MAX_GAUSSIANS = 10_000_000

ARRAY_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest")


class SplatError(ValueError):
    """The splat data is malformed: wrong shapes, dtypes, non-finite values or too large."""


@dataclass(frozen=True, eq=False)
class GaussianSplat:
    means: np.ndarray
    quats: np.ndarray
    log_scales: np.ndarray
    opacity_logits: np.ndarray
    sh_dc: np.ndarray
    sh_rest: np.ndarray
    # Optional per-Gaussian integer part labels (procedural samples carry them; PLY does not).
    part_ids: np.ndarray | None = field(default=None)
    part_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        self.validate()

    # ---- properties ---------------------------------------------------------------------
    @property
    def count(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        k = int(self.sh_rest.shape[1])
        return {v: d for d, v in REST_COUNTS.items()}[k]

    @property
    def bbox_min(self) -> np.ndarray:
        return self.means.min(axis=0) if self.count else np.zeros(3, np.float32)

    @property
    def bbox_max(self) -> np.ndarray:
        return self.means.max(axis=0) if self.count else np.zeros(3, np.float32)

    @property
    def colors(self) -> np.ndarray:
        """View-independent RGB in [0, 1] from the DC term (what a viewport shows)."""
        return np.clip(self.sh_dc * SH_C0 + 0.5, 0.0, 1.0).astype(np.float32)

    @property
    def opacities(self) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-self.opacity_logits.astype(np.float64)))).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAY_FIELDS}

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        *,
        max_gaussians: int = DEFAULT_MAX_GAUSSIANS,
        part_ids: np.ndarray | None = None,
        part_names: tuple[str, ...] = (),
    ) -> "GaussianSplat":
        """Build from a mapping of the six array fields; validates and enforces a size limit."""
        missing = [n for n in ARRAY_FIELDS if n not in arrays]
        if missing:
            raise SplatError(f"missing splat array(s): {', '.join(missing)}")
        means = np.asarray(arrays["means"])
        if means.ndim == 2 and means.shape[0] > max_gaussians:
            raise SplatError(f"splat has {means.shape[0]} Gaussians; the limit is {max_gaussians}")
        return cls(**{n: arrays[n] for n in ARRAY_FIELDS}, part_ids=part_ids, part_names=part_names)

    def with_arrays(self, **changes: np.ndarray) -> "GaussianSplat":
        values = self.arrays()
        values.update(changes)
        return GaussianSplat(**values, part_ids=self.part_ids, part_names=self.part_names)

    def subset(self, index: np.ndarray) -> "GaussianSplat":
        values = {n: np.ascontiguousarray(a[index]) for n, a in self.arrays().items()}
        parts = None if self.part_ids is None else np.ascontiguousarray(self.part_ids[index])
        return GaussianSplat(**values, part_ids=parts, part_names=self.part_names)

    # ---- validation ---------------------------------------------------------------------
    def validate(self) -> None:
        for name in ARRAY_FIELDS:
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray):
                raise SplatError(f"{name} must be a numpy array, got {type(arr).__name__}")
            if arr.dtype != np.float32:
                raise SplatError(f"{name} must be float32, got {arr.dtype}")
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        expected = {
            "means": (n, 3),
            "quats": (n, 4),
            "log_scales": (n, 3),
            "opacity_logits": (n,),
            "sh_dc": (n, 3),
        }
        if self.means.ndim != 2 or self.means.shape[1] != 3:
            raise SplatError(f"means must have shape [N, 3], got {list(self.means.shape)}")
        for name, shape in expected.items():
            arr = getattr(self, name)
            if arr.shape != shape:
                want = "[" + ", ".join("N" if s == n else str(s) for s in shape) + "]"
                raise SplatError(f"{name} must have shape {want} with N={n}, got {list(arr.shape)}")
        rest = self.sh_rest
        if rest.ndim != 3 or rest.shape[0] != n or rest.shape[2] != 3 or rest.shape[1] not in REST_COUNTS.values():
            raise SplatError(
                f"sh_rest must have shape [N, K, 3] with K in (0, 3, 8, 15), got {list(rest.shape)}"
            )
        for name in ARRAY_FIELDS:
            arr = getattr(self, name)
            if not all_finite(arr):
                bad = int((~np.isfinite(arr)).reshape(arr.shape[0], -1).any(axis=1).sum())
                raise SplatError(f"{name} has non-finite values in {bad} Gaussian(s)")
        if n and (np.linalg.norm(self.quats.astype(np.float64), axis=1) < 1e-12).any():
            raise SplatError("quats contains zero-length quaternions")
        if self.part_ids is not None:
            if not isinstance(self.part_ids, np.ndarray) or self.part_ids.shape != (n,):
                raise SplatError("part_ids must be an integer array of shape [N]")
            if not np.issubdtype(self.part_ids.dtype, np.integer):
                raise SplatError("part_ids must be integers")
