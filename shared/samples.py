"""Procedural sample splats, deterministic by seed, built from simple labelled parts.

World frame: Blender's (+Z up). Objects stand on z = 0 and face −Y, towards the default front
camera, so a character's own left side is +X (the right of the front view's image).

A splat is described as a list of :class:`Part` (ellipsoids, capsules, boxes) and filled with
Gaussians by :func:`build_splat`: positions mostly on the surface, flat scales lying in the
surface, random spin about the normal, high opacities, the part's colour with slight noise and
small higher-order SH coefficients. Pieces that share a ``name`` form one labelled part (its
``part_ids`` value), so a head can be made of a skull, hair and eyes.

All randomness comes from one ``numpy.random.Generator`` seeded by the caller, and the maths is
done in float64 before the final float32 cast, so the same seed gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .deformation import quat_multiply
from .splat import REST_COUNTS, SH_C0, GaussianSplat, SplatError

SHAPES = ("ellipsoid", "capsule", "box")
IDENTITY_QUAT = (1.0, 0.0, 0.0, 0.0)

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Part:
    """One primitive piece of a procedural object.

    - ``shape``: ``"ellipsoid"`` (semi-axes ``radii``), ``"box"`` (half-extents ``radii``) or
      ``"capsule"`` (cross-section semi-axes ``radii[0], radii[1]`` and half-length ``radii[2]``
      along its local z axis, end caps included);
    - ``center``: world position; ``rotation``: (w, x, y, z) orientation of the local frame;
    - ``color``: RGB in [0, 1];
    - ``pivot``: the joint the piece turns about when animated (defaults to ``center``);
    - ``density``: multiplies the piece's share of the Gaussians, which is otherwise
      proportional to its surface area (raise it for small details such as eyes).
    """

    name: str
    shape: str
    center: Vec3
    radii: Vec3
    color: Vec3
    pivot: Vec3 | None = None
    rotation: tuple[float, float, float, float] = IDENTITY_QUAT
    density: float = 1.0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise SplatError(f"part {self.name!r}: shape must be one of {SHAPES}, got {self.shape!r}")
        if len(self.radii) != 3 or min(self.radii) <= 0:
            raise SplatError(f"part {self.name!r}: radii must be three positive numbers, got {self.radii}")
        if len(self.center) != 3 or len(self.color) != 3 or len(self.rotation) != 4:
            raise SplatError(f"part {self.name!r}: center/color need 3 values and rotation 4")
        if not self.density > 0:
            raise SplatError(f"part {self.name!r}: density must be positive")

    @property
    def joint(self) -> np.ndarray:
        """The pivot (or centre) as a float32 [3] array."""
        return np.asarray(self.center if self.pivot is None else self.pivot, np.float32)

    def surface_area(self) -> float:
        """Approximate surface area (used to share Gaussians between pieces)."""
        a, b, c = self.radii
        if self.shape == "box":
            return 8.0 * (a * b + b * c + a * c)
        if self.shape == "ellipsoid":
            return _ellipsoid_area(a, b, c)
        cap = min(a, b, c)
        return _ellipsoid_area(a, b, cap) + _ellipse_perimeter(a, b) * 2.0 * (c - cap)


def _ellipsoid_area(a: float, b: float, c: float) -> float:
    p = 1.6075  # Knud Thomsen's approximation, within ~1 %
    return 4.0 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3.0) ** (1.0 / p)


def _ellipse_perimeter(a: float, b: float) -> float:
    h = ((a - b) / (a + b)) ** 2  # Ramanujan's approximation
    return np.pi * (a + b) * (1.0 + 3.0 * h / (10.0 + np.sqrt(4.0 - 3.0 * h)))


# ---- surface sampling in a piece's local frame ------------------------------------------------


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _sample_ellipsoid(rng: np.random.Generator, n: int, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = _unit_vectors(rng, n)
    return u * radii, _normalise(u / radii)


def _sample_box(rng: np.random.Generator, n: int, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    face_areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
    axis = rng.choice(3, size=n, p=face_areas / face_areas.sum())
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    points = (rng.random((n, 3)) * 2.0 - 1.0) * half
    rows = np.arange(n)
    points[rows, axis] = sign * half[axis]
    normals = np.zeros((n, 3))
    normals[rows, axis] = sign
    return points, normals


def _sample_capsule(rng: np.random.Generator, n: int, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b, half_length = radii
    cap = min(a, b, half_length)
    straight = half_length - cap
    side_area = _ellipse_perimeter(a, b) * 2.0 * straight
    cap_area = _ellipsoid_area(a, b, cap)
    on_side = rng.random(n) < side_area / (side_area + cap_area)

    theta = rng.random(n) * 2.0 * np.pi
    side_points = np.stack([a * np.cos(theta), b * np.sin(theta), (rng.random(n) * 2.0 - 1.0) * straight], axis=1)
    side_normals = _normalise(np.stack([np.cos(theta) / a, np.sin(theta) / b, np.zeros(n)], axis=1))

    cap_radii = np.array([a, b, cap])
    cap_points, cap_normals = _sample_ellipsoid(rng, n, cap_radii)
    cap_points[:, 2] += np.sign(cap_points[:, 2]) * straight

    points = np.where(on_side[:, None], side_points, cap_points)
    normals = np.where(on_side[:, None], side_normals, cap_normals)
    return points, normals


_SAMPLERS = {"ellipsoid": _sample_ellipsoid, "box": _sample_box, "capsule": _sample_capsule}


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors v [..., 3] by the unit quaternion q (w, x, y, z)."""
    w, r = q[..., :1], q[..., 1:]
    t = 2.0 * np.cross(r, v)
    return v + w * t + np.cross(r, t)


def _quats_z_to(normals: np.ndarray) -> np.ndarray:
    """Unit quaternions turning +Z onto each unit normal (the shortest arc)."""
    w = 1.0 + normals[:, 2]
    q = np.stack([w, -normals[:, 1], normals[:, 0], np.zeros(len(normals))], axis=1)
    flipped = w < 1e-9  # normal == -Z: any half turn about a horizontal axis
    q[flipped] = (0.0, 1.0, 0.0, 0.0)
    return _normalise(q)


# ---- building a splat -----------------------------------------------------------------------


def _share_counts(parts: Sequence[Part], count: int) -> np.ndarray:
    """Split ``count`` over the pieces by area × density (largest remainder), at least one each."""
    weights = np.array([p.surface_area() * p.density for p in parts], np.float64)
    spare = count - len(parts)
    exact = weights / weights.sum() * spare
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: spare - int(counts.sum())]] += 1
    return counts + 1


def _fill_part(part: Part, n: int, rng: np.random.Generator, k_rest: int) -> dict[str, np.ndarray]:
    radii = np.asarray(part.radii, np.float64)
    points, normals = _SAMPLERS[part.shape](rng, n, radii)

    # Mostly right on the surface, a thin shell just under it and a few inside (for solidity).
    depth = np.minimum(rng.exponential(0.03, n), 0.3)
    inside = rng.random(n) < 0.08
    depth[inside] = rng.random(int(inside.sum())) * 0.85
    points = points * (1.0 - depth)[:, None]

    # Flat discs in the surface: two tangent scales from the area per Gaussian, a thin normal one.
    spacing = np.sqrt(part.surface_area() / n)
    tangent = spacing * 0.75 * np.exp(rng.normal(0.0, 0.25, (n, 2)))
    thin = np.minimum(tangent.min(axis=1), spacing * 0.2)[:, None]
    log_scales = np.log(np.concatenate([tangent, thin], axis=1))

    spin_angle = rng.random(n) * np.pi  # random turn about the normal (a disc is symmetric by π)
    spin = np.stack([np.cos(spin_angle), np.zeros(n), np.zeros(n), np.sin(spin_angle)], axis=1)
    part_q = _normalise(np.asarray(part.rotation, np.float64))
    quats = quat_multiply(part_q[None], quat_multiply(_quats_z_to(normals), spin))
    quats = _normalise(quats)

    means = _rotate(np.broadcast_to(part_q, (n, 4)), points) + np.asarray(part.center, np.float64)

    rgb = np.clip(np.asarray(part.color, np.float64) + rng.normal(0.0, 0.03, (n, 3)), 0.0, 1.0)
    sh_dc = (rgb - 0.5) / SH_C0
    sh_rest = rng.normal(0.0, 0.02, (n, k_rest, 3))
    opacity_logits = rng.normal(4.0, 0.5, n)
    return {
        "means": means,
        "quats": quats,
        "log_scales": log_scales,
        "opacity_logits": opacity_logits,
        "sh_dc": sh_dc,
        "sh_rest": sh_rest,
    }


def build_splat(parts: Sequence[Part], count: int, seed: int = 0, sh_degree: int = 1) -> GaussianSplat:
    """Fill ``parts`` with ``count`` Gaussians; pieces sharing a name share a part id.

    ``part_names`` lists the distinct names in first-appearance order; ``part_ids[i]`` indexes it.
    """
    if not parts:
        raise SplatError("build_splat needs at least one part")
    if sh_degree not in REST_COUNTS:
        raise SplatError(f"sh_degree must be 0, 1, 2 or 3, got {sh_degree}")
    if count < len(parts):
        raise SplatError(f"count must be at least the number of pieces ({len(parts)}), got {count}")
    rng = np.random.default_rng(seed)
    names = tuple(dict.fromkeys(p.name for p in parts))
    pieces, ids = [], []
    for part, n in zip(parts, _share_counts(parts, count)):
        pieces.append(_fill_part(part, int(n), rng, REST_COUNTS[sh_degree]))
        ids.append(np.full(int(n), names.index(part.name), np.int32))
    arrays = {
        field: np.ascontiguousarray(np.concatenate([p[field] for p in pieces]), dtype=np.float32)
        for field in pieces[0]
    }
    return GaussianSplat.from_arrays(arrays, part_ids=np.concatenate(ids), part_names=names)


def part_pivots(parts: Sequence[Part]) -> dict[str, np.ndarray]:
    """The pivot of each named part (the first piece with that name decides)."""
    pivots: dict[str, np.ndarray] = {}
    for part in parts:
        pivots.setdefault(part.name, part.joint)
    return pivots


# ---- the sample character -------------------------------------------------------------------

# Joints (world frame, metres). The character's left is +X.
CHARACTER_JOINTS: dict[str, np.ndarray] = {
    "neck": np.array([0.0, 0.0, 1.50], np.float32),
    "left_shoulder": np.array([0.24, 0.0, 1.44], np.float32),
    "right_shoulder": np.array([-0.24, 0.0, 1.44], np.float32),
    "left_hip": np.array([0.10, 0.0, 0.92], np.float32),
    "right_hip": np.array([-0.10, 0.0, 0.92], np.float32),
    "pelvis": np.array([0.0, 0.0, 0.95], np.float32),
}

# Which joint each labelled part turns about.
CHARACTER_PART_JOINTS: dict[str, str] = {
    "head": "neck",
    "body": "pelvis",
    "left_arm": "left_shoulder",
    "right_arm": "right_shoulder",
    "left_leg": "left_hip",
    "right_leg": "right_hip",
}

CHARACTER_PART_NAMES = tuple(CHARACTER_PART_JOINTS)

_SKIN = (0.93, 0.76, 0.62)
_HAIR = (0.30, 0.18, 0.10)
_SHIRT = (0.80, 0.22, 0.18)
_TROUSERS = (0.16, 0.22, 0.45)
_SHOES = (0.12, 0.10, 0.09)
_EYES = (0.06, 0.06, 0.08)


def _j(name: str) -> Vec3:
    return tuple(float(v) for v in CHARACTER_JOINTS[name])  # type: ignore[return-value]


def character_parts() -> list[Part]:
    """The pieces of the ~1.8 m sample character (standing, arms down, facing −Y)."""
    parts = [
        # head: neck, skull, hair, eyes, nose
        Part("head", "capsule", (0.0, 0.0, 1.52), (0.05, 0.05, 0.06), _SKIN, pivot=_j("neck")),
        Part("head", "ellipsoid", (0.0, 0.0, 1.66), (0.095, 0.105, 0.125), _SKIN, pivot=_j("neck")),
        Part("head", "ellipsoid", (0.0, 0.035, 1.722), (0.103, 0.105, 0.09), _HAIR, pivot=_j("neck")),
        Part("head", "ellipsoid", (0.035, -0.094, 1.675), (0.016, 0.01, 0.016), _EYES, pivot=_j("neck"), density=3.0),
        Part("head", "ellipsoid", (-0.035, -0.094, 1.675), (0.016, 0.01, 0.016), _EYES, pivot=_j("neck"), density=3.0),
        Part("head", "ellipsoid", (0.0, -0.108, 1.635), (0.014, 0.02, 0.022), _SKIN, pivot=_j("neck"), density=3.0),
        # body: torso and hips
        Part("body", "capsule", (0.0, 0.0, 1.21), (0.19, 0.115, 0.30), _SHIRT, pivot=_j("pelvis")),
        Part("body", "ellipsoid", (0.0, 0.0, 0.94), (0.18, 0.11, 0.09), _TROUSERS, pivot=_j("pelvis")),
    ]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        shoulder = _j(f"{side}_shoulder")
        parts += [
            Part(f"{side}_arm", "capsule", (sign * 0.255, 0.0, 1.16), (0.052, 0.052, 0.30), _SHIRT, pivot=shoulder),
            Part(f"{side}_arm", "ellipsoid", (sign * 0.26, -0.005, 0.83), (0.038, 0.028, 0.06), _SKIN, pivot=shoulder),
        ]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        hip = _j(f"{side}_hip")
        parts += [
            Part(f"{side}_leg", "capsule", (sign * 0.10, 0.0, 0.50), (0.075, 0.08, 0.44), _TROUSERS, pivot=hip),
            Part(f"{side}_leg", "box", (sign * 0.10, -0.035, 0.035), (0.055, 0.115, 0.035), _SHOES, pivot=hip),
        ]
    return parts


def make_character(seed: int = 0, count: int = 24000, sh_degree: int = 1) -> GaussianSplat:
    """A ~1.8 m humanoid, feet on z = 0, facing −Y, labelled by ``CHARACTER_PART_NAMES``."""
    return build_splat(character_parts(), count, seed=seed, sh_degree=sh_degree)


def make_test_blob(seed: int = 0, count: int = 2000, sh_degree: int = 0) -> GaussianSplat:
    """A small two-part object (a body with a cap on top, ~0.5 m tall) for fast tests."""
    parts = [
        Part("body", "ellipsoid", (0.0, 0.0, 0.2), (0.2, 0.15, 0.2), (0.2, 0.6, 0.3)),
        Part("cap", "ellipsoid", (0.0, 0.0, 0.42), (0.08, 0.08, 0.06), (0.9, 0.8, 0.2), pivot=(0.0, 0.0, 0.38)),
    ]
    return build_splat(parts, count, seed=seed, sh_degree=sh_degree)
