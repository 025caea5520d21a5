"""Synthetic motion data: procedural part-based splats animated by labelled parametric motions.

Objects (characters, animals, plants, vehicles) are built from coloured Gaussian parts with
``animus3d_shared.samples``; each part turns about its pivot. A motion is a per-part rigid
transform per frame followed by a global similarity (scale and rotate about the object's base
centre, then translate), turned into an :class:`~animus3d_shared.deformation.Animation`.

World frame: +Z up, objects face −Y (the front camera). "Left"/"right" in slide motions are the
viewer's (−X is the image left); "left arm"/"right arm" are the character's own (+X is its left).

Everything is deterministic by seed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from animus3d_shared.deformation import Animation
from animus3d_shared.samples import Part, build_splat, character_parts
from animus3d_shared.splat import GaussianSplat

KINDS = ("character", "animal", "plant", "vehicle")

MOTION_LABELS = ("still", "spin", "jump", "sway", "nod", "wave_left", "wave_right", "walk", "tilt",
                 "grow", "shrink", "slide_left", "slide_right")

# What each kind can do (parts a motion needs must exist).
KIND_MOTIONS: dict[str, tuple[str, ...]] = {
    "character": MOTION_LABELS,
    "animal": ("still", "spin", "jump", "sway", "nod", "walk", "tilt", "grow", "shrink", "slide_left", "slide_right"),
    "plant": ("still", "spin", "jump", "sway", "tilt", "grow", "shrink", "slide_left", "slide_right"),
    "vehicle": ("still", "spin", "jump", "tilt", "grow", "shrink", "slide_left", "slide_right"),
}

NOUNS: dict[str, tuple[str, ...]] = {
    "character": ("character", "person", "robot", "figure"),
    "animal": ("dog", "animal", "cat", "horse"),
    "plant": ("plant", "flower", "tree", "sapling"),
    "vehicle": ("car", "truck", "vehicle", "toy car"),
}

# {n} is the noun. Several paraphrases per motion.
DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "still": ("a {n} standing still", "the {n} stays perfectly still", "a motionless {n}",
              "the {n} does not move"),
    "spin": ("a {n} spinning around", "the {n} turns around in place", "a {n} rotating on the spot",
             "the {n} spins in a full circle"),
    "jump": ("a {n} jumping up and down", "the {n} jumps", "a {n} bouncing", "the {n} hops into the air"),
    "sway": ("a {n} swaying from side to side", "the {n} sways gently", "a {n} rocking left and right",
             "the {n} sways in the wind"),
    "nod": ("a {n} nodding its head", "the {n} nods", "a {n} nodding yes", "the {n} bobs its head up and down"),
    "wave_left": ("a {n} waving its left arm", "the {n} waves the left hand", "a {n} raising and waving the left hand",
                  "the {n} waves hello with its left arm"),
    "wave_right": ("a {n} waving its right arm", "the {n} waves the right hand",
                   "a {n} raising and waving the right hand", "the {n} waves hello with its right arm"),
    "walk": ("a {n} walking in place", "the {n} walks", "a {n} marching on the spot", "the {n} is walking"),
    "tilt": ("a {n} tilting to the side", "the {n} leans over", "a {n} tipping sideways", "the {n} tilts"),
    "grow": ("a {n} growing bigger", "the {n} grows", "a {n} getting larger", "the {n} expands"),
    "shrink": ("a {n} shrinking", "the {n} gets smaller", "a {n} shrinking down", "the {n} contracts"),
    "slide_left": ("a {n} sliding to the left", "the {n} moves to the left", "a {n} gliding left",
                   "the {n} slides left"),
    "slide_right": ("a {n} sliding to the right", "the {n} moves to the right", "a {n} gliding right",
                    "the {n} slides right"),
}


_LEFT_RIGHT = re.compile(r"\b(left|right)\b")


def mirror_caption(caption: str) -> str:
    """The caption of the clip seen in a mirror (image flipped left-right): "left" and "right" swap.

    True for every motion here: a slide to the viewer's left becomes one to the right, a character
    waving its left arm becomes one waving its right arm, and the rest name no side. A caption that
    names both sides ("rocking left and right") describes a symmetric motion and stays as it is."""
    if len(set(_LEFT_RIGHT.findall(caption))) > 1:
        return caption
    return _LEFT_RIGHT.sub(lambda m: "right" if m.group(1) == "left" else "left", caption)


class MotionDataError(ValueError):
    """Bad synthetic-data request (unknown kind or motion, a motion the object cannot do)."""


@dataclass(frozen=True)
class SyntheticObject:
    """A procedural splat with named parts and their pivots."""

    kind: str
    splat: GaussianSplat
    pivots: dict[str, np.ndarray]  # part name -> joint [3]
    base: np.ndarray  # centre of the footprint (z = 0), the global pivot [3]
    height: float

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(self.splat.part_names)

    def part_mask(self, name: str) -> np.ndarray:
        return np.asarray(self.splat.part_ids) == self.part_names.index(name)


# ---- objects ----------------------------------------------------------------------------------


def _animal_parts(rng: np.random.Generator) -> list[Part]:
    colour = tuple(float(c) for c in rng.uniform(0.3, 0.9, 3))
    dark = tuple(c * 0.6 for c in colour)
    length = rng.uniform(0.45, 0.6)
    parts = [
        Part("body", "capsule", (0.0, 0.0, 0.45), (0.16, 0.15, length), colour,
             rotation=(math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0)),
        Part("head", "ellipsoid", (0.0, -length - 0.08, 0.62), (0.12, 0.13, 0.11), colour, pivot=(0.0, -length + 0.05, 0.52)),
        Part("head", "ellipsoid", (0.0, -length - 0.2, 0.6), (0.06, 0.06, 0.05), dark, pivot=(0.0, -length + 0.05, 0.52)),
        Part("tail", "capsule", (0.0, length + 0.1, 0.55), (0.03, 0.03, 0.14), dark, pivot=(0.0, length, 0.5)),
    ]
    for name, x, y in (("front_left_leg", 0.1, -length * 0.6), ("front_right_leg", -0.1, -length * 0.6),
                       ("back_left_leg", 0.1, length * 0.6), ("back_right_leg", -0.1, length * 0.6)):
        parts.append(Part(name, "capsule", (x, y, 0.2), (0.045, 0.045, 0.2), dark, pivot=(x, y, 0.38)))
    return parts


def _plant_parts(rng: np.random.Generator) -> list[Part]:
    green = (0.15, rng.uniform(0.45, 0.7), 0.2)
    parts = [
        Part("pot", "capsule", (0.0, 0.0, 0.12), (0.14, 0.14, 0.12), (0.6, 0.3, 0.15)),
        Part("stem", "capsule", (0.0, 0.0, 0.55), (0.025, 0.025, 0.33), (0.2, 0.45, 0.15), pivot=(0.0, 0.0, 0.24)),
    ]
    for k in range(int(rng.integers(2, 5))):
        angle = 2 * math.pi * k / 4 + rng.uniform(-0.3, 0.3)
        z = 0.45 + 0.12 * k
        parts.append(Part("leaves", "ellipsoid", (0.12 * math.cos(angle), 0.12 * math.sin(angle), z),
                          (0.1, 0.05, 0.02), green, pivot=(0.0, 0.0, z)))
    flower = tuple(float(c) for c in rng.uniform(0.5, 1.0, 3))
    parts.append(Part("flower", "ellipsoid", (0.0, 0.0, 0.92), (0.1, 0.1, 0.06), flower, pivot=(0.0, 0.0, 0.86)))
    return parts


def _vehicle_parts(rng: np.random.Generator) -> list[Part]:
    paint = tuple(float(c) for c in rng.uniform(0.2, 0.95, 3))
    length = rng.uniform(0.8, 1.0)
    parts = [
        Part("body", "box", (0.0, 0.0, 0.3), (0.3, length / 2, 0.12), paint),
        Part("cabin", "box", (0.0, 0.05, 0.5), (0.26, length / 4, 0.09), (0.55, 0.75, 0.9)),
    ]
    for name, x, y in (("wheel_fl", 0.3, -length * 0.32), ("wheel_fr", -0.3, -length * 0.32),
                       ("wheel_bl", 0.3, length * 0.32), ("wheel_br", -0.3, length * 0.32)):
        parts.append(Part(name, "ellipsoid", (x, y, 0.14), (0.05, 0.14, 0.14), (0.1, 0.1, 0.1)))
    return parts


def _character_parts(rng: np.random.Generator) -> list[Part]:
    shirt = tuple(float(c) for c in rng.uniform(0.15, 0.9, 3))
    return [Part(p.name, p.shape, p.center, p.radii, shirt if p.color == (0.80, 0.22, 0.18) else p.color,
                 pivot=p.pivot, rotation=p.rotation, density=p.density) for p in character_parts()]


_BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "character": _character_parts, "animal": _animal_parts, "plant": _plant_parts, "vehicle": _vehicle_parts,
}


def make_object(kind: str, seed: int = 0, count: int = 3000) -> SyntheticObject:
    """A procedural object of ``kind`` (see ``KINDS``) with ``count`` Gaussians, deterministic by seed."""
    if kind not in _BUILDERS:
        raise MotionDataError(f"unknown object kind {kind!r}; choose one of {KINDS}")
    rng = np.random.default_rng(seed)
    parts = _BUILDERS[kind](rng)
    splat = build_splat(parts, count, seed=seed, sh_degree=0)
    pivots: dict[str, np.ndarray] = {}
    for p in parts:
        pivots.setdefault(p.name, p.joint.astype(np.float64))
    means = np.asarray(splat.means, np.float64)
    lo, hi = means.min(0), means.max(0)
    base = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return SyntheticObject(kind, splat, pivots, base, float(hi[2] - lo[2]))


# ---- rotations ----------------------------------------------------------------------------------


def axis_angle_matrix(axis, angle: float) -> np.ndarray:
    """Rotation matrix [3, 3] of ``angle`` radians about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, np.float64)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation matrix [3, 3]."""
    tr = np.trace(m)
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    return q / np.linalg.norm(q) * (1 if q[0] >= 0 else -1)


# ---- motions ----------------------------------------------------------------------------------


@dataclass
class FramePose:
    """One frame of a motion: per-part rotations about pivots, then a global similarity."""

    part_rotations: dict[str, np.ndarray] = field(default_factory=dict)
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0


def _legs(obj: SyntheticObject) -> list[str]:
    return [n for n in obj.part_names if n.endswith("leg")]


def motion_poses(obj: SyntheticObject, label: str, frames: int, amplitude: float = 1.0,
                 phase: float = 0.0) -> list[FramePose]:
    """Per-frame poses of motion ``label`` (frame 0 is the rest pose); ``amplitude`` scales it."""
    if label not in MOTION_LABELS:
        raise MotionDataError(f"unknown motion {label!r}; choose one of {MOTION_LABELS}")
    if label not in KIND_MOTIONS[obj.kind]:
        raise MotionDataError(f"a {obj.kind} cannot {label}")
    if frames < 2:
        raise MotionDataError(f"a motion needs at least 2 frames, got {frames}")
    h = obj.height
    poses = []
    for t in range(frames):
        u = t / (frames - 1)  # 0..1
        p = FramePose()
        if label == "spin":
            p.rotation = axis_angle_matrix((0, 0, 1), 2 * math.pi * u * amplitude)
        elif label == "jump":
            p.translation = np.array([0.0, 0.0, 0.35 * h * amplitude * abs(math.sin(2 * math.pi * u))])
        elif label == "sway":
            p.rotation = axis_angle_matrix((0, 1, 0), 0.3 * amplitude * math.sin(2 * math.pi * u) * (1 if phase == 0 else -1))
        elif label == "tilt":
            p.rotation = axis_angle_matrix((0, 1, 0), 0.45 * amplitude * u * (1 if phase >= 0 else -1))
        elif label == "grow":
            p.scale = 1.0 + 0.5 * amplitude * u
        elif label == "shrink":
            p.scale = 1.0 - 0.4 * amplitude * u
        elif label in ("slide_left", "slide_right"):
            sign = -1.0 if label == "slide_left" else 1.0
            p.translation = np.array([sign * 0.5 * h * amplitude * u, 0.0, 0.0])
        elif label == "nod":
            p.part_rotations["head"] = axis_angle_matrix((1, 0, 0), 0.45 * amplitude * math.sin(2 * math.pi * u))
        elif label in ("wave_left", "wave_right"):
            side = "left" if label == "wave_left" else "right"
            sign = 1.0 if side == "left" else -1.0
            # raise the arm sideways (about −Y for the left arm, +Y for the right), then wave it
            raised = 2.3 * amplitude * min(1.0, 3 * u) + 0.35 * amplitude * math.sin(6 * math.pi * u) * min(1.0, 3 * u)
            p.part_rotations[f"{side}_arm"] = axis_angle_matrix((0, -sign, 0), raised)
        elif label == "walk":
            swing = 0.5 * amplitude * math.sin(2 * math.pi * u)
            for leg in _legs(obj):
                s = 1.0 if ("left" in leg) != leg.startswith("back") else -1.0
                p.part_rotations[leg] = axis_angle_matrix((1, 0, 0), s * swing)
            for arm, s in (("left_arm", -1.0), ("right_arm", 1.0)):
                if arm in obj.part_names:
                    p.part_rotations[arm] = axis_angle_matrix((1, 0, 0), 0.6 * s * swing)
        poses.append(p)
    return poses


def poses_to_animation(obj: SyntheticObject, poses: list[FramePose], fps: float = 8.0) -> Animation:
    """The Animation (deltas per Gaussian) of ``poses`` applied to ``obj``."""
    means = np.asarray(obj.splat.means, np.float64)
    ids = np.asarray(obj.splat.part_ids)
    n, t_count = len(means), len(poses)
    dpos = np.zeros((t_count, n, 3), np.float32)
    drot = np.zeros((t_count, n, 4), np.float32)
    dscale = np.zeros((t_count, n, 3), np.float32)
    for t, pose in enumerate(poses):
        local = means.copy()
        part_quats = np.empty((len(obj.part_names), 4))
        for k, name in enumerate(obj.part_names):
            r = pose.part_rotations.get(name)
            if r is not None:
                mask = ids == k
                pivot = obj.pivots[name]
                local[mask] = (means[mask] - pivot) @ r.T + pivot
            part_quats[k] = matrix_to_quat(pose.rotation if r is None else pose.rotation @ r)
        moved = pose.scale * (local - obj.base) @ pose.rotation.T + obj.base + pose.translation
        dpos[t] = moved - means
        drot[t] = part_quats[ids]
        dscale[t] = math.log(pose.scale)
    return Animation(dpos, drot, dscale, fps=float(fps))


def motion_animation(obj: SyntheticObject, label: str, frames: int = 16, amplitude: float = 1.0,
                     phase: float = 0.0, fps: float = 8.0) -> Animation:
    """Ground-truth Animation of motion ``label`` on ``obj``."""
    return poses_to_animation(obj, motion_poses(obj, label, frames, amplitude, phase), fps)


def describe(kind: str, label: str, rng: np.random.Generator | None = None, index: int | None = None) -> str:
    """One text description of ``label`` for an object of ``kind`` (random paraphrase and noun, or ``index``)."""
    if label not in DESCRIPTIONS:
        raise MotionDataError(f"unknown motion {label!r}")
    templates, nouns = DESCRIPTIONS[label], NOUNS[kind]
    if index is not None:
        return templates[index % len(templates)].format(n=nouns[(index // len(templates)) % len(nouns)])
    rng = rng or np.random.default_rng(0)
    return templates[int(rng.integers(len(templates)))].format(n=nouns[int(rng.integers(len(nouns)))])


def learnt_motions_document(threshold: float = 0.55) -> dict:
    """What a prior trained on this data learnt, as the worker reads it (``learnt_motions.json``
    beside the weights, see ``animus3d_worker.understanding``): every motion's caption templates.

    At 0.55, everyday synonyms of the learnt motions ("leaps", "rotates in place", "stays motionless")
    clear the threshold and motions outside the vocabulary ("flaps its wings", "opens its lid", "bows")
    and nonsense words do not (tests/test_understanding.py holds such cases)."""
    return {"threshold": threshold, "static": ["still"],
            "motions": {label: list(DESCRIPTIONS[label]) for label in MOTION_LABELS}}


def all_descriptions(kind: str, label: str) -> list[str]:
    """Every paraphrase × noun of ``label`` for ``kind``."""
    return [t.format(n=n) for t in DESCRIPTIONS[label] for n in NOUNS[kind]]


# ---- rendering ----------------------------------------------------------------------------------


def render_clip(obj: SyntheticObject, animation: Animation, *, resolution: int = 64, jitter_deg: float = 0.0,
                azimuth_deg: float = 0.0, elevation_deg: float = 0.0, rng: np.random.Generator | None = None,
                device: str = "cpu", backend: str = "auto"):
    """Renders of ``animation`` on ``obj`` from one camera: float tensor [T, 3, H, W] in [0, 1].

    The camera frames the rest bbox exactly as the pipeline's front camera does (``make_cameras``),
    then orbits by ``azimuth_deg`` (0 = front) and ``elevation_deg`` like the pipeline's orbit
    views; ``jitter_deg`` adds a random yaw/pitch offset (uniform in ±jitter_deg).
    """
    import torch

    from animus3d_worker.render import make_cameras, render

    rng = rng or np.random.default_rng(0)
    splat = obj.splat
    means0 = np.asarray(splat.means, np.float64)
    lo, hi = means0.min(0), means0.max(0)
    centre = (lo + hi) / 2
    cams = make_cameras(lo, hi, resolution=resolution, orbit_views=0, device=device)
    yaw, pitch = math.radians(azimuth_deg), math.radians(elevation_deg)  # object turned = camera orbited
    if jitter_deg > 0:
        dyaw, dpitch = np.radians(rng.uniform(-jitter_deg, jitter_deg, 2))
        yaw, pitch = yaw + dyaw, pitch + dpitch
    if yaw or pitch:
        world_rot = axis_angle_matrix((0, 0, 1), yaw) @ axis_angle_matrix((1, 0, 0), pitch)
        m = np.eye(4)
        m[:3, :3] = world_rot
        m[:3, 3] = centre - world_rot @ centre
        cams = type(cams)(viewmats=cams.viewmats @ torch.tensor(m, dtype=torch.float32, device=device),
                          Ks=cams.Ks, width=cams.width, height=cams.height)
    T = animation.num_frames
    means = torch.tensor(np.stack([animation.frame_means(splat.means, t) for t in range(T)]), device=device)
    quats = torch.tensor(np.stack([animation.frame_quats(splat.quats, t) for t in range(T)]), device=device)
    scales = torch.exp(torch.tensor(np.stack([animation.frame_log_scales(splat.log_scales, t) for t in range(T)]),
                                    device=device))
    opac = torch.sigmoid(torch.tensor(np.asarray(splat.opacity_logits, np.float32), device=device))
    colors = torch.tensor(np.asarray(splat.colors, np.float32), device=device).clamp(0, 1)
    with torch.no_grad():
        images, _ = render(means, quats, scales, opac, colors, cams, background=(1.0, 1.0, 1.0), backend=backend)
    return images[:, 0].permute(0, 3, 1, 2).contiguous()  # [T, 3, H, W]


# ---- dataset ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipSpec:
    """One training clip: which object, which motion and how, and its caption."""

    kind: str
    object_seed: int
    label: str
    amplitude: float
    phase: float
    caption: str
    jitter_seed: int
    azimuth_deg: float = 0.0  # 0: the front view; else an orbit view at ORBIT_ELEVATION_DEG


ORBIT_ELEVATION_DEG = 10.0  # the pipeline's default camera_elevation_deg
ORBIT_FRACTION = 0.35  # share of training clips seen from a random orbit view (MSD renders those too)
DEFAULT_AMPLITUDE_RANGE = (0.7, 1.2)  # motion amplitudes of the clips (1 = the motion's full size)


def check_amplitude_range(amplitude_range: tuple[float, float]) -> None:
    lo, hi = amplitude_range
    if not 0.0 < lo <= hi:
        raise MotionDataError(f"amplitude range must satisfy 0 < low <= high, got {amplitude_range}")


def clip_specs(count: int, seed: int = 0, objects_per_kind: int = 6,
               amplitude_range: tuple[float, float] = DEFAULT_AMPLITUDE_RANGE,
               first_object_seed: int = 0) -> list[ClipSpec]:
    """``count`` random clip specs, balanced over kinds and their motions, deterministic by seed.

    Each clip's object is one of ``objects_per_kind`` per kind, object seeds ``first_object_seed`` +
    0 … objects_per_kind − 1. Amplitudes are uniform in ``amplitude_range`` (1 = the motion's full size)."""
    if objects_per_kind < 1 or first_object_seed < 0:
        raise MotionDataError("objects_per_kind must be at least 1 and first_object_seed not negative")
    check_amplitude_range(amplitude_range)
    lo, hi = amplitude_range
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        motions = KIND_MOTIONS[kind]
        label = motions[int(rng.integers(len(motions)))]
        phase = (float(rng.choice([0.0, 0.0, math.pi])) if label in ("sway", "walk", "nod") else
                 float(rng.choice([1.0, -1.0])) if label == "tilt" else 0.0)
        caption = describe(kind, label, rng)
        jitter_seed = int(rng.integers(2**31))
        orbit = rng.random() < ORBIT_FRACTION and not label.startswith("slide")  # left/right are the front's
        azimuth = float(rng.uniform(30.0, 330.0)) if orbit else 0.0
        specs.append(ClipSpec(kind, first_object_seed + int(rng.integers(objects_per_kind)), label, float(rng.uniform(lo, hi)),
                              phase, caption, jitter_seed, azimuth))
    return specs


def build_clip(spec: ClipSpec, *, frames: int = 16, resolution: int = 64, count: int = 1500,
               jitter_deg: float = 4.0, device: str = "cpu", backend: str = "auto"):
    """Renders one clip: float tensor [T, 3, H, W] in [0, 1]."""
    obj = make_object(spec.kind, spec.object_seed, count)
    anim = motion_animation(obj, spec.label, frames, spec.amplitude, spec.phase)
    return render_clip(obj, anim, resolution=resolution, jitter_deg=jitter_deg, azimuth_deg=spec.azimuth_deg,
                       elevation_deg=ORBIT_ELEVATION_DEG if spec.azimuth_deg else 0.0,
                       rng=np.random.default_rng(spec.jitter_seed), device=device, backend=backend)
