"""Synthetic motion data: procedural part-based splats animated by labelled parametric motions.

Objects (``FAMILIES``: characters, animals, plants, vehicles, chairs, tables, bottles, houses, chests,
birds, snowmen, toys, mushrooms, lamps, fish, cabinets) are built from coloured Gaussian parts with
``animus3d_shared.samples``; each part turns about its pivot. A motion is a per-part rigid
transform per frame followed by a global similarity (scale and rotate about the object's base
centre, then translate), turned into an :class:`~animus3d_shared.deformation.Animation`.

World frame: +Z up, objects face −Y (the front camera). "Left"/"right" in slide and turn motions are the
viewer's (−X is the image left); "left arm"/"right leg" are the object's own (+X is its left).
A speed, amplitude or repetition word in a caption changes the clip (``MODIFIERS``, ``modifier_timing``).

Everything is deterministic by seed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from animus3d_shared.deformation import Animation
from animus3d_shared.samples import Part, build_splat, character_parts
from animus3d_shared.splat import SH_C0, GaussianSplat

LEGACY_KINDS = ("character", "animal", "plant", "vehicle")  # the first four families (same objects by seed)

# Families no training clip uses (evals/split.json lists them; tests/lab/test_heldout.py checks both agree).
HELDOUT_FAMILIES = ("lamp", "fish", "cabinet")

FAMILIES = LEGACY_KINDS + ("chair", "table", "bottle", "house", "chest", "bird", "snowman", "toy", "mushroom") + HELDOUT_FAMILIES

KINDS = tuple(f for f in FAMILIES if f not in HELDOUT_FAMILIES)  # the training families

LEGACY_MOTIONS = ("still", "spin", "jump", "sway", "nod", "wave_left", "wave_right", "walk", "tilt",
                  "grow", "shrink", "slide_left", "slide_right")

# Motions of the whole object (every family can do them).
WHOLE_MOTIONS = ("still", "spin", "spin_left", "spin_right", "jump", "hop_forward", "bounce", "roll_left",
                 "roll_right", "flip", "fall_over", "tilt", "sway", "wobble", "shake", "squash_stretch", "pulse",
                 "grow", "shrink", "sink", "rise", "slide_left", "slide_right", "slide_forward", "slide_back",
                 "turn_left", "turn_right", "circle")

# Motions of a part (the family needs the part).
PART_MOTIONS = ("nod", "shake_head", "wave_left", "wave_right", "walk", "kick", "bow", "flap_wings", "wag_tail",
                "open_lid", "open_door")

MOTION_LABELS = LEGACY_MOTIONS + tuple(m for m in WHOLE_MOTIONS + PART_MOTIONS if m not in LEGACY_MOTIONS)

_FAMILY_PART_MOTIONS: dict[str, tuple[str, ...]] = {
    "character": ("nod", "shake_head", "wave_left", "wave_right", "walk", "kick", "bow"),
    "animal": ("nod", "shake_head", "walk", "wag_tail"),
    "plant": (),
    "vehicle": (),
    "chair": (),
    "table": (),
    "bottle": (),
    "house": ("open_door",),
    "chest": ("open_lid",),
    "bird": ("nod", "shake_head", "walk", "flap_wings", "wag_tail"),
    "snowman": ("nod", "shake_head"),
    "toy": ("nod", "shake_head", "wave_left", "wave_right", "walk", "kick"),
    "mushroom": (),
    "lamp": ("nod", "shake_head"),
    "fish": ("wag_tail",),
    "cabinet": ("open_door",),
}

# The motions the four first families had keep their order at the front (clip_specs draws from these lists).
LEGACY_KIND_MOTIONS = {
    "character": LEGACY_MOTIONS,
    "animal": ("still", "spin", "jump", "sway", "nod", "walk", "tilt", "grow", "shrink", "slide_left", "slide_right"),
    "plant": ("still", "spin", "jump", "sway", "tilt", "grow", "shrink", "slide_left", "slide_right"),
    "vehicle": ("still", "spin", "jump", "tilt", "grow", "shrink", "slide_left", "slide_right"),
}

# What each family can do (parts a motion needs must exist).
KIND_MOTIONS: dict[str, tuple[str, ...]] = {
    family: tuple(dict.fromkeys(LEGACY_KIND_MOTIONS.get(family, ()) + WHOLE_MOTIONS + _FAMILY_PART_MOTIONS[family]))
    for family in FAMILIES
}

NOUNS: dict[str, tuple[str, ...]] = {
    "character": ("character", "person", "robot", "figure"),
    "animal": ("dog", "animal", "cat", "horse"),
    "plant": ("plant", "flower", "tree", "sapling"),
    "vehicle": ("car", "truck", "vehicle", "toy car"),
    "chair": ("chair", "stool", "seat", "armchair"),
    "table": ("table", "desk", "coffee table", "side table"),
    "bottle": ("bottle", "vase", "jar", "flask"),
    "house": ("house", "cottage", "hut", "building"),
    "chest": ("chest", "box", "trunk", "crate"),
    "bird": ("bird", "parrot", "duck", "chicken"),
    "snowman": ("snowman", "snow figure", "snowwoman", "frosty"),
    "toy": ("toy", "teddy bear", "stuffed toy", "doll"),
    "mushroom": ("mushroom", "toadstool", "fungus", "mushroom cap"),
    "lamp": ("lamp", "desk lamp", "lantern", "reading light"),
    "fish": ("fish", "goldfish", "shark", "trout"),
    "cabinet": ("cabinet", "cupboard", "wardrobe", "fridge"),
}

# {n} is the noun. Several paraphrases per motion. Directions are the viewer's (the front camera's),
# spins are as seen from above; a caption mirrored by ``mirror_caption`` is the mirrored motion's.
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
    "spin_left": ("a {n} spinning clockwise", "the {n} spins to the left", "a {n} rotating clockwise",
                  "the {n} turns around and around to the left"),
    "spin_right": ("a {n} spinning counterclockwise", "the {n} spins to the right", "a {n} rotating counterclockwise",
                   "the {n} turns around and around to the right"),
    "hop_forward": ("a {n} hopping forwards", "the {n} hops towards the camera", "a {n} jumping ahead",
                    "the {n} hops ahead"),
    "bounce": ("a {n} bouncing in place", "the {n} bounces on the spot", "a {n} bobbing up and down",
               "the {n} does little bounces"),
    "roll_left": ("a {n} rolling to the left", "the {n} rolls over to the left", "a {n} rolling sideways to the left",
                  "the {n} rolls left along the ground"),
    "roll_right": ("a {n} rolling to the right", "the {n} rolls over to the right", "a {n} rolling sideways to the right",
                   "the {n} rolls right along the ground"),
    "flip": ("a {n} doing a flip", "the {n} does a somersault", "a {n} flipping over",
             "the {n} flips over in the air"),
    "fall_over": ("a {n} falling over", "the {n} falls down", "a {n} toppling over", "the {n} tips over and falls"),
    "wobble": ("a {n} wobbling", "the {n} wobbles like jelly", "a {n} wobbling around", "the {n} totters in a circle"),
    "shake": ("a {n} shaking", "the {n} shakes", "a {n} trembling", "the {n} shakes all over"),
    "squash_stretch": ("a {n} squashing and stretching", "the {n} squashes down and stretches up",
                       "a {n} squishing and stretching", "the {n} squashes and stretches"),
    "pulse": ("a {n} pulsing", "the {n} breathes in and out", "a {n} throbbing", "the {n} pulses like a heartbeat"),
    "sink": ("a {n} sinking into the ground", "the {n} sinks down", "a {n} going down into the ground",
             "the {n} sinks"),
    "rise": ("a {n} rising into the air", "the {n} floats up", "a {n} rising up", "the {n} lifts off the ground"),
    "slide_forward": ("a {n} sliding forwards", "the {n} moves towards the camera", "a {n} gliding closer",
                      "the {n} comes closer"),
    "slide_back": ("a {n} sliding backwards", "the {n} moves away from the camera", "a {n} gliding away",
                   "the {n} goes further away"),
    "turn_left": ("a {n} turning to face left", "the {n} turns to the left", "a {n} turning left",
                  "the {n} looks to the left"),
    "turn_right": ("a {n} turning to face right", "the {n} turns to the right", "a {n} turning right",
                   "the {n} looks to the right"),
    "circle": ("a {n} moving in a circle", "the {n} goes around in a circle", "a {n} circling around",
               "the {n} travels around in a circle"),
    "shake_head": ("a {n} shaking its head", "the {n} shakes its head no", "a {n} saying no with its head",
                   "the {n} turns its head from side to side"),
    "kick": ("a {n} kicking", "the {n} kicks a leg out", "a {n} kicking its leg out", "the {n} does a kick"),
    "bow": ("a {n} bowing", "the {n} takes a bow", "a {n} bending over", "the {n} bows down"),
    "flap_wings": ("a {n} flapping its wings", "the {n} flaps its wings", "a {n} beating its wings",
                   "the {n} moves its wings up and down"),
    "wag_tail": ("a {n} wagging its tail", "the {n} wags its tail", "a {n} swishing its tail",
                 "the {n} waggles its tail"),
    "open_lid": ("a {n} opening its lid", "the {n} opens its lid", "a {n} lifting its lid", "the {n} opens up"),
    "open_door": ("a {n} opening its door", "the {n} opens the door", "a {n} swinging its door open",
                  "the {n} door opens"),
}

# How a motion runs over the clip: "periodic" (cycles), "extent" (covers a distance/size that grows
# with time), "goal" (reaches a pose and holds it) or "static".
MOTION_TYPES: dict[str, str] = {label: "periodic" for label in MOTION_LABELS}
MOTION_TYPES.update({label: "extent" for label in ("grow", "shrink", "sink", "rise", "slide_left", "slide_right",
                                                    "slide_forward", "slide_back", "tilt")})
MOTION_TYPES.update({label: "goal" for label in ("fall_over", "turn_left", "turn_right", "open_lid", "open_door")})
MOTION_TYPES["still"] = "static"

# Cycles a periodic motion shows in a clip (turns for spins, hops for jumps, waves for a wave).
DEFAULT_CYCLES: dict[str, float] = {label: 2.0 for label, kind in MOTION_TYPES.items() if kind == "periodic"}
DEFAULT_CYCLES.update({"spin": 1.0, "sway": 1.0, "nod": 1.0, "walk": 1.0, "spin_left": 1.0, "spin_right": 1.0,
                       "roll_left": 1.0, "roll_right": 1.0, "flip": 1.0, "circle": 1.0, "wave_left": 3.0,
                       "wave_right": 3.0})

MODIFIERS: dict[str, dict[str, float]] = {
    # word(s) appended to a caption -> what they change: "cycles" (periodic: the count, 1-3),
    # "speed" (extent: multiplies the distance/size covered; goal: the pose is reached in 1/speed of
    # the clip), "amplitude" (multiplies the size of the motion).
    "slowly": {"cycles": 1.0, "speed": 0.5},
    "quickly": {"cycles": 3.0, "speed": 2.0},
    "twice": {"cycles": 2.0},
    "over and over": {"cycles": 3.0},
    "a little": {"amplitude": 0.5},
    "wildly": {"amplitude": 1.6},
}
MODIFIER_PROBABILITY = 0.4  # share of training captions that carry a modifier


@dataclass(frozen=True)
class Timing:
    """How a caption's modifier runs a motion: cycles (periodic), speed (extent/goal), amplitude factor."""

    cycles: float | None = None
    speed: float = 1.0
    amplitude: float = 1.0


def modifier_timing(label: str, modifier: str) -> Timing:
    """The :class:`Timing` that ``modifier`` (a key of ``MODIFIERS`` or "") gives motion ``label``."""
    if modifier == "":
        return Timing()
    if modifier not in MODIFIERS:
        raise MotionDataError(f"unknown modifier {modifier!r}; choose one of {tuple(MODIFIERS)}")
    effect, kind = MODIFIERS[modifier], MOTION_TYPES[label]
    if kind == "periodic":
        return Timing(cycles=effect.get("cycles"), amplitude=effect.get("amplitude", 1.0))
    if kind == "extent":
        return Timing(speed=effect.get("speed", 1.0), amplitude=effect.get("amplitude", 1.0))
    if kind == "goal":
        return Timing(speed=max(1.0, effect.get("speed", 1.0)))
    return Timing()


def modifiers_for(label: str) -> tuple[str, ...]:
    """The modifiers that change motion ``label``'s clip (a caption only carries one of these)."""
    if label not in MOTION_TYPES:
        raise MotionDataError(f"unknown motion {label!r}")
    default = DEFAULT_CYCLES.get(label)
    out = []
    for word in MODIFIERS:
        t = modifier_timing(label, word)
        if (t.cycles is not None and t.cycles != default) or t.speed != 1.0 or t.amplitude != 1.0:
            out.append(word)
    return tuple(out)


def with_modifier(caption: str, modifier: str) -> str:
    return f"{caption} {modifier}" if modifier else caption


# Motions whose captions name a side or direction as seen from the front camera (no orbit views).
FRONT_RELATIVE = ("slide_left", "slide_right", "slide_forward", "slide_back", "hop_forward", "roll_left",
                  "roll_right", "turn_left", "turn_right")


_LEFT_RIGHT = re.compile(r"\b(left|right)\b")
_SIDES = re.compile(r"\b(left|right|clockwise|counterclockwise)\b")
_MIRRORED = {"left": "right", "right": "left", "clockwise": "counterclockwise", "counterclockwise": "clockwise"}


def mirror_caption(caption: str) -> str:
    """The caption of the clip seen in a mirror (image flipped left-right): "left" and "right" swap.

    True for every motion here: a slide to the viewer's left becomes one to the right, a character
    waving its left arm becomes one waving its right arm, a clockwise spin (seen from above) becomes a
    counterclockwise one, and the rest name no side. A caption that names both sides ("rocking left
    and right") describes a symmetric motion and stays as it is."""
    if len(set(_LEFT_RIGHT.findall(caption))) > 1:
        return caption
    return _SIDES.sub(lambda m: _MIRRORED[m.group(1)], caption)


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


def _colour(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.95) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(lo, hi, 3))  # type: ignore[return-value]


def _shade(c, f: float) -> tuple[float, float, float]:
    return tuple(float(min(1.0, v * f)) for v in c)  # type: ignore[return-value]


def _toy_parts(rng: np.random.Generator) -> list[Part]:
    fur = _colour(rng, 0.35, 0.9)
    dark = _shade(fur, 0.6)
    size = rng.uniform(0.8, 1.2)
    s = lambda *v: tuple(size * x for x in v)  # noqa: E731
    parts = [
        Part("body", "ellipsoid", s(0, 0, 0.28), s(0.16, 0.13, 0.2), fur),
        Part("body", "ellipsoid", s(0, -0.1, 0.26), s(0.09, 0.04, 0.11), _shade(fur, 1.3)),
        Part("head", "ellipsoid", s(0, 0, 0.6), s(0.13, 0.12, 0.12), fur, pivot=s(0, 0, 0.48)),
        Part("head", "ellipsoid", s(0.09, 0, 0.72), s(0.04, 0.03, 0.04), dark, pivot=s(0, 0, 0.48)),
        Part("head", "ellipsoid", s(-0.09, 0, 0.72), s(0.04, 0.03, 0.04), dark, pivot=s(0, 0, 0.48)),
        Part("head", "ellipsoid", s(0, -0.11, 0.58), s(0.045, 0.03, 0.035), _shade(fur, 1.3), pivot=s(0, 0, 0.48)),
    ]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        parts.append(Part(f"{side}_arm", "capsule", s(sign * 0.2, 0, 0.32), s(0.045, 0.045, 0.1), dark,
                          pivot=s(sign * 0.15, 0, 0.4)))
        parts.append(Part(f"{side}_leg", "ellipsoid", s(sign * 0.1, -0.05, 0.07), s(0.06, 0.08, 0.07), dark,
                          pivot=s(sign * 0.1, 0, 0.12)))
    return parts


def _mushroom_parts(rng: np.random.Generator) -> list[Part]:
    cap, stem = _colour(rng, 0.4, 1.0), (0.93, 0.9, 0.8)
    h, r = rng.uniform(0.25, 0.45), rng.uniform(0.15, 0.3)
    parts = [Part("stem", "capsule", (0, 0, h / 2), (0.05, 0.05, h / 2), stem),
             Part("cap", "ellipsoid", (0, 0, h), (r, r, r * 0.55), cap)]
    for _ in range(int(rng.integers(0, 5))):  # spots
        a = rng.uniform(0, 2 * math.pi)
        parts.append(Part("cap", "ellipsoid", (0.6 * r * math.cos(a), 0.6 * r * math.sin(a), h + 0.22 * r),
                          (0.03, 0.03, 0.02), (1.0, 1.0, 1.0), density=2.0))
    return parts


def _quat_about(axis, angle: float) -> tuple[float, float, float, float]:
    a = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    return (math.cos(angle / 2), *(float(v) * math.sin(angle / 2) for v in a))


def _chair_parts(rng: np.random.Generator) -> list[Part]:
    wood, cushion = _colour(rng, 0.2, 0.7), _colour(rng)
    w, d, h = rng.uniform(0.2, 0.3), rng.uniform(0.2, 0.3), rng.uniform(0.4, 0.55)
    parts = [Part("seat", "box", (0.0, 0.0, h), (w, d, 0.04), cushion),
             Part("back", "box", (0.0, d - 0.02, h + rng.uniform(0.25, 0.4)), (w, 0.03, rng.uniform(0.2, 0.32)), wood)]
    for x in (-w + 0.03, w - 0.03):
        for y in (-d + 0.03, d - 0.03):
            parts.append(Part("legs", "capsule", (x, y, h / 2), (0.025, 0.025, h / 2), wood))
    return parts


def _table_parts(rng: np.random.Generator) -> list[Part]:
    top, leg = _colour(rng, 0.3, 0.9), _colour(rng, 0.1, 0.6)
    w, d, h = rng.uniform(0.35, 0.6), rng.uniform(0.25, 0.45), rng.uniform(0.45, 0.75)
    round_top = bool(rng.random() < 0.4)
    parts = [Part("top", "ellipsoid" if round_top else "box", (0.0, 0.0, h), (w, d, 0.03), top)]
    for x in (-w * 0.75, w * 0.75):
        for y in (-d * 0.75, d * 0.75):
            parts.append(Part("legs", "capsule", (x, y, h / 2), (0.03, 0.03, h / 2), leg))
    return parts


def _bottle_parts(rng: np.random.Generator) -> list[Part]:
    glass, cap = _colour(rng, 0.2, 0.9), _colour(rng)
    r, h = rng.uniform(0.1, 0.2), rng.uniform(0.3, 0.6)
    vase = bool(rng.random() < 0.5)
    parts = [Part("body", "ellipsoid" if vase else "capsule", (0.0, 0.0, h / 2 + 0.01), (r, r, h / 2), glass),
             Part("neck", "capsule", (0.0, 0.0, h + 0.08), (r * 0.4, r * 0.4, 0.1), glass)]
    if not vase:
        parts.append(Part("cap", "ellipsoid", (0.0, 0.0, h + 0.19), (r * 0.45, r * 0.45, 0.03), cap))
    return parts


def _house_parts(rng: np.random.Generator) -> list[Part]:
    wall, roof, door = _colour(rng, 0.5, 0.95), _colour(rng, 0.2, 0.7), _colour(rng, 0.1, 0.5)
    w, d, h = rng.uniform(0.4, 0.6), rng.uniform(0.35, 0.5), rng.uniform(0.45, 0.65)
    dw, dh = 0.1, rng.uniform(0.16, 0.22)
    parts = [Part("walls", "box", (0.0, 0.0, h / 2), (w, d, h / 2), wall),
             Part("roof", "box", (0.0, 0.0, h + 0.12), (w * 1.1, d * 0.75, d * 0.75), roof,
                  rotation=_quat_about((1, 0, 0), math.pi / 4)),
             Part("door", "box", (0.0, -d - 0.015, dh), (dw, 0.012, dh), door, pivot=(dw, -d - 0.015, dh))]
    for x in (-w * 0.6, w * 0.6):
        parts.append(Part("windows", "box", (x, -d - 0.01, h * 0.6), (0.08, 0.01, 0.08), (0.6, 0.8, 0.95)))
    if rng.random() < 0.6:
        parts.append(Part("chimney", "box", (w * 0.5, 0.1, h + 0.3), (0.05, 0.05, 0.12), roof))
    return parts


def _chest_parts(rng: np.random.Generator) -> list[Part]:
    wood, trim = _colour(rng, 0.2, 0.8), _colour(rng, 0.5, 1.0)
    w, d, h = rng.uniform(0.3, 0.5), rng.uniform(0.2, 0.32), rng.uniform(0.15, 0.28)
    hinge = (0.0, d, 2 * h)
    return [Part("base", "box", (0.0, 0.0, h), (w, d, h), wood),
            Part("lid", "box", (0.0, 0.0, 2 * h + 0.05), (w + 0.01, d + 0.01, 0.05), wood, pivot=hinge),
            Part("lid", "box", (0.0, -d - 0.015, 2 * h + 0.02), (0.04, 0.01, 0.04), trim, pivot=hinge)]


def _bird_parts(rng: np.random.Generator) -> list[Part]:
    feathers, beak = _colour(rng), (0.95, rng.uniform(0.5, 0.8), 0.1)
    dark = tuple(c * 0.6 for c in feathers)
    r = rng.uniform(0.12, 0.17)
    z = 0.2 + r
    neck = (0.0, -r * 0.6, z + r * 0.7)
    parts = [Part("body", "ellipsoid", (0.0, 0.0, z), (r, r * 1.3, r), feathers),
             Part("head", "ellipsoid", (0.0, -r * 1.0, z + r * 1.1), (r * 0.6, r * 0.6, r * 0.6), feathers, pivot=neck),
             Part("head", "ellipsoid", (0.0, -r * 1.7, z + r * 1.05), (r * 0.15, r * 0.35, r * 0.12), beak, pivot=neck),
             Part("tail", "ellipsoid", (0.0, r * 1.5, z + r * 0.2), (r * 0.5, r * 0.6, r * 0.08), dark,
                  pivot=(0.0, r * 1.1, z + r * 0.1))]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        parts.append(Part(f"{side}_wing", "ellipsoid", (sign * r * 1.6, 0.0, z + r * 0.3), (r * 0.8, r * 0.7, r * 0.08),
                          dark, pivot=(sign * r * 0.8, 0.0, z + r * 0.3)))
        parts.append(Part(f"{side}_leg", "capsule", (sign * r * 0.4, 0.0, 0.1), (0.015, 0.015, 0.1), beak,
                          pivot=(sign * r * 0.4, 0.0, 0.2)))
    return parts


def _snowman_parts(rng: np.random.Generator) -> list[Part]:
    snow, hat, scarf = (0.95, 0.95, 0.97), _colour(rng, 0.05, 0.4), _colour(rng)
    r1, r2, r3 = rng.uniform(0.2, 0.26), rng.uniform(0.14, 0.18), rng.uniform(0.1, 0.13)
    z2 = 2 * r1 + r2 * 0.8
    z3 = z2 + r2 + r3 * 0.8
    neck = (0.0, 0.0, z2 + r2 * 0.8)
    return [Part("body", "ellipsoid", (0.0, 0.0, r1), (r1, r1, r1), snow),
            Part("body", "ellipsoid", (0.0, 0.0, z2), (r2, r2, r2), snow),
            Part("body", "capsule", (0.0, 0.0, z2 + r2 * 0.75), (r2 * 0.8, r2 * 0.8, 0.04), scarf),
            Part("head", "ellipsoid", (0.0, 0.0, z3), (r3, r3, r3), snow, pivot=neck),
            Part("head", "capsule", (0.0, -r3 - 0.05, z3), (0.015, 0.015, 0.06), (1.0, 0.5, 0.1), pivot=neck,
                 rotation=_quat_about((1, 0, 0), math.pi / 2)),
            Part("head", "capsule", (0.0, 0.0, z3 + r3 + 0.06), (r3 * 0.7, r3 * 0.7, 0.08), hat, pivot=neck)]


def _lamp_parts(rng: np.random.Generator) -> list[Part]:
    metal, shade = _colour(rng, 0.1, 0.6), _colour(rng, 0.4, 1.0)
    h = rng.uniform(0.5, 0.9)
    return [Part("base", "ellipsoid", (0.0, 0.0, 0.03), (0.16, 0.16, 0.03), metal),
            Part("pole", "capsule", (0.0, 0.0, h / 2 + 0.03), (0.02, 0.02, h / 2), metal),
            Part("head", "ellipsoid", (0.0, -0.08, h + 0.06), (0.14, 0.14, 0.1), shade, pivot=(0.0, 0.0, h + 0.03)),
            Part("head", "ellipsoid", (0.0, -0.1, h + 0.0), (0.05, 0.05, 0.05), (1.0, 0.95, 0.7),
                 pivot=(0.0, 0.0, h + 0.03))]


def _fish_parts(rng: np.random.Generator) -> list[Part]:
    scales, fin = _colour(rng), _colour(rng)
    length, r = rng.uniform(0.3, 0.45), rng.uniform(0.08, 0.13)
    z = r * 1.6
    return [Part("body", "ellipsoid", (0.0, 0.0, z), (r * 0.7, length, r * 1.4), scales),
            Part("body", "ellipsoid", (0.0, -length * 0.1, z + r * 1.4), (0.01, length * 0.35, r * 0.4), fin),
            Part("body", "ellipsoid", (r * 0.4, -length * 0.7, z + r * 0.3), (0.02, 0.02, 0.02), (0.05, 0.05, 0.05),
                 density=3.0),
            Part("body", "ellipsoid", (-r * 0.4, -length * 0.7, z + r * 0.3), (0.02, 0.02, 0.02), (0.05, 0.05, 0.05),
                 density=3.0),
            Part("tail", "ellipsoid", (0.0, length + r * 0.8, z), (0.015, r * 1.0, r * 1.3), fin,
                 pivot=(0.0, length * 0.9, z))]


def _cabinet_parts(rng: np.random.Generator) -> list[Part]:
    wood, handle = _colour(rng, 0.3, 0.95), _colour(rng, 0.0, 0.4)
    w, d, h = rng.uniform(0.25, 0.4), rng.uniform(0.2, 0.3), rng.uniform(0.5, 0.9)
    return [Part("frame", "box", (0.0, 0.0, h / 2 + 0.05), (w, d, h / 2), wood),
            Part("door", "box", (0.0, -d - 0.015, h / 2 + 0.05), (w * 0.92, 0.012, h * 0.46), wood,
                 pivot=(w * 0.92, -d - 0.015, h / 2 + 0.05)),
            Part("door", "capsule", (-w * 0.75, -d - 0.04, h / 2 + 0.05), (0.012, 0.012, 0.05), handle,
                 pivot=(w * 0.92, -d - 0.015, h / 2 + 0.05)),
            Part("feet", "box", (0.0, 0.0, 0.025), (w * 0.9, d * 0.9, 0.025), handle)]


_BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "character": _character_parts, "animal": _animal_parts, "plant": _plant_parts, "vehicle": _vehicle_parts,
    "chair": _chair_parts, "table": _table_parts, "bottle": _bottle_parts, "house": _house_parts,
    "chest": _chest_parts, "bird": _bird_parts, "snowman": _snowman_parts, "toy": _toy_parts, "mushroom": _mushroom_parts, "lamp": _lamp_parts,
    "fish": _fish_parts, "cabinet": _cabinet_parts,
}

TEXTURES = ("plain", "noise", "stripes", "spots")


def _textured(splat: GaussianSplat, rng: np.random.Generator) -> GaussianSplat:
    """``splat`` with a random surface texture: plain, colour noise, stripes or spots."""
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    colours = np.asarray(splat.colors, np.float64)
    means = np.asarray(splat.means, np.float64)
    if texture == "noise":
        colours = colours * rng.uniform(0.8, 1.2, (len(colours), 1))
    elif texture == "stripes":
        axis = rng.normal(size=3)
        phase = means @ (axis / np.linalg.norm(axis)) * rng.uniform(15.0, 40.0)
        colours = colours * (0.75 + 0.25 * (np.sin(phase) > 0))[:, None]
    elif texture == "spots":
        centres = means[rng.integers(len(means), size=6)]
        near = np.min(np.linalg.norm(means[:, None] - centres[None], axis=-1), axis=1) < 0.06
        colours = np.where(near[:, None], rng.uniform(0.0, 1.0, 3)[None], colours)
    sh_dc = (np.clip(colours, 0.0, 1.0) - 0.5) / SH_C0
    return dataclasses.replace(splat, sh_dc=sh_dc.astype(np.float32))


def make_object(kind: str, seed: int = 0, count: int = 3000, flaws: bool = False) -> SyntheticObject:
    """A procedural object of family ``kind`` (see ``FAMILIES``) with ``count`` Gaussians, deterministic by seed.

    The families after ``LEGACY_KINDS`` get a random surface texture (``TEXTURES``); ``flaws`` adds
    the flaws of a captured splat (``capture_flaws``)."""
    if kind not in _BUILDERS:
        raise MotionDataError(f"unknown object kind {kind!r}; choose one of {FAMILIES}")
    rng = np.random.default_rng(seed)
    parts = _BUILDERS[kind](rng)
    splat = build_splat(parts, count, seed=seed, sh_degree=0)
    if kind not in LEGACY_KINDS:
        splat = _textured(splat, np.random.default_rng([seed, 1]))
    pivots: dict[str, np.ndarray] = {}
    for p in parts:
        pivots.setdefault(p.name, p.joint.astype(np.float64))
    means = np.asarray(splat.means, np.float64)
    lo, hi = means.min(0), means.max(0)
    base = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    obj = SyntheticObject(kind, splat, pivots, base, float(hi[2] - lo[2]))
    return capture_flaws(obj, seed) if flaws else obj


FLOATER_SHARE = 0.004  # share of the Gaussians turned into floaters
FLOATER_MARGIN = 0.05  # floaters lie within this share of the bbox size around the object


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = np.moveaxis(a, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(b, -1, 0)
    return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], -1)


def capture_flaws(obj: SyntheticObject, seed: int) -> SyntheticObject:
    """``obj`` as a capture gives it, deterministic by seed (the Gaussian count is kept):

    - floaters: ``FLOATER_SHARE`` of the Gaussians moved to random spots just outside the object
      (within ``FLOATER_MARGIN`` of its bbox size), a part of their own that only moves with the object;
    - uneven density: Gaussians beyond a random plane thinned by 30–70 %, their number re-spent on
      jittered copies of Gaussians on the other side;
    - placement: tilted up to 10° about a horizontal axis, moved off the origin by up to 3 heights;
    - scale: an object height between 5 mm and 30 m (log-uniform).
    """
    rng = np.random.default_rng([seed, 2])
    splat = obj.splat
    means = np.asarray(splat.means, np.float64).copy()
    fields = {name: np.asarray(getattr(splat, name)).copy() for name in ("quats", "log_scales", "opacity_logits",
                                                                         "sh_dc", "sh_rest")}
    ids = np.asarray(splat.part_ids).copy()
    n = len(means)
    # uneven density
    direction = rng.normal(size=3)
    side = means @ (direction / np.linalg.norm(direction))
    thin = np.flatnonzero(side > np.quantile(side, rng.uniform(0.3, 0.7)))
    dense = np.setdiff1d(np.arange(n), thin)
    dropped = thin[rng.random(len(thin)) < rng.uniform(0.3, 0.7)]
    if len(dropped) and len(dense):
        source = rng.choice(dense, len(dropped))
        for name in fields:
            fields[name][dropped] = fields[name][source]
        means[dropped] = means[source] + rng.normal(0, 0.005, (len(dropped), 3)) * obj.height
        ids[dropped] = ids[source]
    # floaters
    lo, hi = means.min(0), means.max(0)
    margin = FLOATER_MARGIN * (hi - lo)
    floaters = rng.choice(n, max(1, int(round(FLOATER_SHARE * n))), replace=False)
    spots = rng.uniform(lo - margin, hi + margin, (len(floaters), 3))
    spots[:, 2] = np.maximum(spots[:, 2], lo[2])
    means[floaters] = spots
    fields["sh_dc"][floaters] = ((rng.uniform(0, 1, (len(floaters), 3)) - 0.5) / SH_C0)
    names = tuple(splat.part_names) + ("floaters",)
    ids[floaters] = len(names) - 1
    # placement and scale
    axis = np.array([*rng.normal(size=2), 0.0])
    rot = axis_angle_matrix(axis, math.radians(rng.uniform(0.0, 10.0)))
    scale = 10 ** rng.uniform(math.log10(0.005), math.log10(30.0)) / obj.height
    offset = rng.uniform(-3.0, 3.0, 3) * obj.height * scale

    def place(x: np.ndarray) -> np.ndarray:
        return scale * (x - obj.base) @ rot.T + offset

    fields["quats"] = _quat_mul(np.broadcast_to(matrix_to_quat(rot), fields["quats"].shape), fields["quats"])
    fields["log_scales"] = fields["log_scales"] + math.log(scale)
    pivots = {name: place(p) for name, p in obj.pivots.items()}
    pivots["floaters"] = offset.copy()
    flawed = GaussianSplat.from_arrays({"means": place(means).astype(np.float32),
                                        **{k: v.astype(np.float32) for k, v in fields.items()}},
                                       part_ids=ids.astype(np.int32), part_names=names)
    return SyntheticObject(obj.kind, flawed, pivots, offset, obj.height * scale)


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
    """One frame of a motion: per-part rotations about pivots, rotations of groups of parts about a
    shared joint, then a global similarity (rotation and scale about the object's base, a vertical
    volume-keeping stretch, a translation)."""

    part_rotations: dict[str, np.ndarray] = field(default_factory=dict)
    group_rotations: list[tuple[tuple[str, ...], np.ndarray, np.ndarray]] = field(default_factory=list)
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0
    stretch: float = 1.0  # vertical factor; the horizontal axes get 1/sqrt(stretch)

    def rotate_about(self, point: np.ndarray, base: np.ndarray, rotation: np.ndarray) -> None:
        """Sets the global rotation to ``rotation`` about ``point`` (not the base)."""
        self.rotation = rotation
        arm = np.asarray(point, np.float64) - base
        self.translation = self.translation + arm - rotation @ arm


def _legs(obj: SyntheticObject) -> list[str]:
    return [n for n in obj.part_names if n.endswith("leg")]


def _smooth(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


def motion_poses(obj: SyntheticObject, label: str, frames: int, amplitude: float = 1.0,
                 phase: float = 0.0, cycles: float | None = None, speed: float = 1.0) -> list[FramePose]:
    """Per-frame poses of motion ``label`` (frame 0 is the rest pose); ``amplitude`` scales it.

    ``cycles``: how many cycles a periodic motion shows (``DEFAULT_CYCLES`` when None); ``speed``
    multiplies what an extent motion covers and makes a goal motion reach its pose in 1/speed of the
    clip (see ``MOTION_TYPES``)."""
    if label not in MOTION_LABELS:
        raise MotionDataError(f"unknown motion {label!r}; choose one of {MOTION_LABELS}")
    if label not in KIND_MOTIONS[obj.kind]:
        raise MotionDataError(f"a {obj.kind} cannot {label}")
    if frames < 2:
        raise MotionDataError(f"a motion needs at least 2 frames, got {frames}")
    if cycles is not None and not 0 < cycles <= 8:
        raise MotionDataError(f"cycles must be in (0, 8], got {cycles}")
    if not 0 < speed <= 8:
        raise MotionDataError(f"speed must be in (0, 8], got {speed}")
    c = DEFAULT_CYCLES.get(label, 1.0) if cycles is None else float(cycles)
    h, a, base = obj.height, amplitude, obj.base
    centre = base + np.array([0.0, 0.0, h / 2])
    means = np.asarray(obj.splat.means, np.float64)
    poses = []
    for t in range(frames):
        u = t / (frames - 1)  # 0..1
        wave = math.sin(2 * math.pi * c * u)  # periodic, c cycles
        hops = abs(math.sin(math.pi * c * u))  # c hops
        goal = _smooth(u * speed)
        p = FramePose()
        if label in ("spin", "spin_right"):
            p.rotation = axis_angle_matrix((0, 0, 1), 2 * math.pi * u * a * c)
        elif label == "spin_left":
            p.rotation = axis_angle_matrix((0, 0, 1), -2 * math.pi * u * a * c)
        elif label == "jump":
            p.translation = np.array([0.0, 0.0, 0.35 * h * a * hops])
        elif label == "hop_forward":
            p.translation = np.array([0.0, -0.45 * h * a * u, 0.25 * h * a * hops])
        elif label == "bounce":
            p.translation = np.array([0.0, 0.0, 0.12 * h * a * hops])
        elif label == "sway":
            p.rotation = axis_angle_matrix((0, 1, 0), 0.3 * a * wave * (1 if phase == 0 else -1))
        elif label == "tilt":
            p.rotation = axis_angle_matrix((0, 1, 0), 0.45 * a * u * speed * (1 if phase >= 0 else -1))
        elif label == "grow":
            p.scale = 1.0 + 0.5 * a * u * speed
        elif label == "shrink":
            p.scale = max(0.15, 1.0 - 0.4 * a * u * speed)
        elif label == "pulse":
            p.scale = 1.0 + 0.15 * a * (1 - math.cos(2 * math.pi * c * u)) / 2
        elif label == "squash_stretch":
            p.stretch = 1.0 + 0.3 * min(a, 2.0) * wave
        elif label in ("slide_left", "slide_right"):
            sign = -1.0 if label == "slide_left" else 1.0
            p.translation = np.array([sign * 0.5 * h * a * u * speed, 0.0, 0.0])
        elif label in ("slide_forward", "slide_back"):
            sign = -1.0 if label == "slide_forward" else 1.0  # forward: towards the front camera (−Y)
            p.translation = np.array([0.0, sign * 0.6 * h * a * u * speed, 0.0])
        elif label in ("sink", "rise"):
            sign = -1.0 if label == "sink" else 1.0
            p.translation = np.array([0.0, 0.0, sign * 0.5 * h * a * u * speed])
        elif label in ("roll_left", "roll_right"):
            sign = -1.0 if label == "roll_left" else 1.0  # the top leads the way it rolls
            p.translation = np.array([sign * 0.5 * h * a * u, 0.0, 0.0])
            p.rotate_about(centre, base, axis_angle_matrix((0, 1, 0), sign * 2 * math.pi * c * u))
        elif label == "flip":
            p.translation = np.array([0.0, 0.0, 0.5 * h * a * hops])
            p.rotate_about(centre, base, axis_angle_matrix((1, 0, 0), -2 * math.pi * c * u))
        elif label == "fall_over":  # sideways (+X, or −X for a negative phase), about that footprint edge
            sign = 1.0 if phase >= 0 else -1.0
            edge = np.array([means[:, 0].max() if sign > 0 else means[:, 0].min(), base[1], base[2]])
            p.rotate_about(edge, base, axis_angle_matrix((0, 1, 0), sign * 0.5 * math.pi * min(a, 1.0) * goal * goal))
        elif label in ("turn_left", "turn_right"):  # face the viewer's left (−X) or right (+X)
            sign = -1.0 if label == "turn_left" else 1.0
            p.rotation = axis_angle_matrix((0, 0, 1), sign * 0.5 * math.pi * min(a, 1.2) * goal)
        elif label == "wobble":
            axis = (math.cos(2 * math.pi * c * u), math.sin(2 * math.pi * c * u), 0.0)
            p.rotation = axis_angle_matrix(axis, 0.2 * a * min(1.0, 4 * u))
        elif label == "shake":
            p.translation = np.array([0.06 * h * a * wave, 0.0, 0.0])
        elif label == "circle":
            r = 0.3 * h * a
            angle = 2 * math.pi * c * u
            p.translation = np.array([r * math.sin(angle), r * (math.cos(angle) - 1), 0.0])
        elif label == "nod":
            p.part_rotations["head"] = axis_angle_matrix((1, 0, 0), 0.45 * a * wave)
        elif label == "shake_head":
            p.part_rotations["head"] = axis_angle_matrix((0, 0, 1), 0.6 * a * wave)
        elif label in ("wave_left", "wave_right"):
            side = "left" if label == "wave_left" else "right"
            sign = 1.0 if side == "left" else -1.0
            # raise the arm sideways (about −Y for the left arm, +Y for the right), then wave it
            raised = 2.3 * a * min(1.0, 3 * u) + 0.35 * a * math.sin(2 * math.pi * c * u) * min(1.0, 3 * u)
            p.part_rotations[f"{side}_arm"] = axis_angle_matrix((0, -sign, 0), raised)
        elif label == "walk":
            swing = 0.5 * a * wave
            for leg in _legs(obj):
                s = 1.0 if ("left" in leg) != leg.startswith("back") else -1.0
                p.part_rotations[leg] = axis_angle_matrix((1, 0, 0), s * swing)
            for arm, s in (("left_arm", -1.0), ("right_arm", 1.0)):
                if arm in obj.part_names:
                    p.part_rotations[arm] = axis_angle_matrix((1, 0, 0), 0.6 * s * swing)
        elif label == "kick":  # the right leg swings out in front
            p.part_rotations["right_leg"] = axis_angle_matrix((1, 0, 0), -1.1 * a * math.sin(math.pi * c * u) ** 2)
        elif label == "bow":  # the upper body bends forwards about the pelvis
            upper = tuple(n for n in ("body", "head", "left_arm", "right_arm") if n in obj.part_names)
            bend = axis_angle_matrix((1, 0, 0), 0.8 * min(a, 1.3) * math.sin(math.pi * c * u) ** 2)
            p.group_rotations.append((upper, obj.pivots["body"], bend))
        elif label == "flap_wings":
            p.part_rotations["left_wing"] = axis_angle_matrix((0, 1, 0), -0.8 * a * wave)
            p.part_rotations["right_wing"] = axis_angle_matrix((0, 1, 0), 0.8 * a * wave)
        elif label == "wag_tail":
            p.part_rotations["tail"] = axis_angle_matrix((0, 0, 1), 0.6 * a * wave)
        elif label == "open_lid":  # about the hinge at the back
            p.part_rotations["lid"] = axis_angle_matrix((1, 0, 0), -1.7 * min(a, 1.15) * goal)
        elif label == "open_door":  # about the hinge on its side, outwards
            p.part_rotations["door"] = axis_angle_matrix((0, 0, 1), 1.6 * min(a, 1.2) * goal)
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
            mask = ids == k
            if r is not None:
                pivot = obj.pivots[name]
                local[mask] = (means[mask] - pivot) @ r.T + pivot
            for names, pivot, g in pose.group_rotations:
                if name in names:
                    local[mask] = (local[mask] - pivot) @ g.T + pivot
                    r = g if r is None else g @ r
            part_quats[k] = matrix_to_quat(pose.rotation if r is None else pose.rotation @ r)
        across = 1.0 / math.sqrt(pose.stretch)
        moved = pose.scale * ((local - obj.base) @ pose.rotation.T) * np.array([across, across, pose.stretch])
        moved = moved + obj.base + pose.translation
        dpos[t] = moved - means
        drot[t] = part_quats[ids]
        dscale[t] = math.log(pose.scale)
    return Animation(dpos, drot, dscale, fps=float(fps))


def motion_animation(obj: SyntheticObject, label: str, frames: int = 16, amplitude: float = 1.0,
                     phase: float = 0.0, fps: float = 8.0, *, cycles: float | None = None,
                     speed: float = 1.0) -> Animation:
    """Ground-truth Animation of motion ``label`` on ``obj`` (``cycles``, ``speed``: see ``motion_poses``)."""
    return poses_to_animation(obj, motion_poses(obj, label, frames, amplitude, phase, cycles, speed), fps)


def describe(kind: str, label: str, rng: np.random.Generator | None = None, index: int | None = None,
             modifier: str = "") -> str:
    """One text description of ``label`` for an object of ``kind`` (random paraphrase and noun, or
    ``index``), ending in ``modifier`` (a key of ``MODIFIERS``) if given."""
    if label not in DESCRIPTIONS:
        raise MotionDataError(f"unknown motion {label!r}")
    if kind not in NOUNS:
        raise MotionDataError(f"unknown object kind {kind!r}; choose one of {FAMILIES}")
    if modifier and modifier not in MODIFIERS:
        raise MotionDataError(f"unknown modifier {modifier!r}; choose one of {tuple(MODIFIERS)}")
    templates, nouns = DESCRIPTIONS[label], NOUNS[kind]
    if index is not None:
        caption = templates[index % len(templates)].format(n=nouns[(index // len(templates)) % len(nouns)])
    else:
        rng = rng or np.random.default_rng(0)
        caption = templates[int(rng.integers(len(templates)))].format(n=nouns[int(rng.integers(len(nouns)))])
    return with_modifier(caption, modifier)


def learnt_motions_document(threshold: float = 0.55) -> dict:
    """What a prior trained on this data learnt, as the worker reads it (``learnt_motions.json``
    beside the weights, see ``animus3d_worker.understanding``): every training motion's caption
    templates and the modifier words its captions may end with.

    At 0.55, everyday synonyms of the learnt motions ("leaps", "rotates in place", "stays motionless")
    clear the threshold and motions outside the vocabulary ("juggles", "plays the piano") and nonsense
    words do not (tests/lab/test_motion_vocabulary.py holds such cases)."""
    trained = {label for kind in KINDS for label in KIND_MOTIONS[kind]}
    labels = [label for label in MOTION_LABELS if label in trained]
    return {"threshold": threshold, "static": ["still"],
            "motions": {label: list(DESCRIPTIONS[label]) for label in labels},
            "modifiers": {label: list(modifiers_for(label)) for label in labels if modifiers_for(label)}}


def all_descriptions(kind: str, label: str) -> list[str]:
    """Every paraphrase × noun of ``label`` for ``kind`` (without modifiers)."""
    return [t.format(n=n) for t in DESCRIPTIONS[label] for n in NOUNS[kind]]


def all_captions(kind: str, label: str) -> list[str]:
    """Every caption a training clip of ``label`` on ``kind`` can carry: paraphrase × noun × modifier."""
    return [with_modifier(c, m) for c in all_descriptions(kind, label) for m in ("",) + modifiers_for(label)]


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
    modifier: str = ""  # the caption's speed/amplitude/repetition words (MODIFIERS), amplitude included above
    cycles: float | None = None  # periodic motions: cycles in the clip (None: DEFAULT_CYCLES)
    speed: float = 1.0  # extent and goal motions (see motion_poses)
    flaws: bool = False  # the object carries a capture's flaws (capture_flaws)


ORBIT_ELEVATION_DEG = 10.0  # the pipeline's default camera_elevation_deg
ORBIT_FRACTION = 0.35  # share of training clips seen from a random orbit view (MSD renders those too)
FLAW_FRACTION = 0.3  # share of training clips whose object has a capture's flaws
DEFAULT_AMPLITUDE_RANGE = (0.7, 1.2)  # motion amplitudes of the clips (1 = the motion's full size)


def check_amplitude_range(amplitude_range: tuple[float, float]) -> None:
    lo, hi = amplitude_range
    if not 0.0 < lo <= hi:
        raise MotionDataError(f"amplitude range must satisfy 0 < low <= high, got {amplitude_range}")


def clip_specs(count: int, seed: int = 0, objects_per_kind: int = 6,
               amplitude_range: tuple[float, float] = DEFAULT_AMPLITUDE_RANGE,
               first_object_seed: int = 0) -> list[ClipSpec]:
    """``count`` random clip specs, balanced over the training families (``KINDS``) and their motions,
    deterministic by seed.

    Each clip's object is one of ``objects_per_kind`` per family, object seeds ``first_object_seed`` +
    0 … objects_per_kind − 1. Amplitudes are uniform in ``amplitude_range`` (1 = the motion's full
    size), times the caption modifier's factor ("a little", "wildly"). ``MODIFIER_PROBABILITY`` of the
    captions carry a modifier the motion honours, ``FLAW_FRACTION`` of the objects a capture's flaws;
    motions named from the front camera (``FRONT_RELATIVE``) are always seen from the front."""
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
                 float(rng.choice([1.0, -1.0])) if label in ("tilt", "fall_over") else 0.0)
        caption = describe(kind, label, rng)
        options = modifiers_for(label)
        modifier = options[int(rng.integers(len(options)))] if options and rng.random() < MODIFIER_PROBABILITY else ""
        timing = modifier_timing(label, modifier)
        jitter_seed = int(rng.integers(2**31))
        orbit = rng.random() < ORBIT_FRACTION and label not in FRONT_RELATIVE  # left/right are the front's
        azimuth = float(rng.uniform(30.0, 330.0)) if orbit else 0.0
        object_seed = first_object_seed + int(rng.integers(objects_per_kind))
        amplitude = float(rng.uniform(lo, hi)) * timing.amplitude
        flaws = bool(rng.random() < FLAW_FRACTION)
        specs.append(ClipSpec(kind, object_seed, label, amplitude, phase, with_modifier(caption, modifier),
                              jitter_seed, azimuth, modifier, timing.cycles, timing.speed, flaws))
    return specs


def spec_object(spec: ClipSpec, count: int = 1500) -> SyntheticObject:
    """The object of ``spec`` (its flaws included)."""
    return make_object(spec.kind, spec.object_seed, count, flaws=spec.flaws)


def spec_animation(obj: SyntheticObject, spec: ClipSpec, frames: int = 16) -> Animation:
    """The ground-truth Animation of ``spec`` on its object (amplitude, phase, cycles and speed)."""
    return motion_animation(obj, spec.label, frames, spec.amplitude, spec.phase, cycles=spec.cycles, speed=spec.speed)


def build_clip(spec: ClipSpec, *, frames: int = 16, resolution: int = 64, count: int = 1500,
               jitter_deg: float = 4.0, device: str = "cpu", backend: str = "auto"):
    """Renders one clip: float tensor [T, 3, H, W] in [0, 1]."""
    obj = spec_object(spec, count)
    anim = spec_animation(obj, spec, frames)
    return render_clip(obj, anim, resolution=resolution, jitter_deg=jitter_deg, azimuth_deg=spec.azimuth_deg,
                       elevation_deg=ORBIT_ELEVATION_DEG if spec.azimuth_deg else 0.0,
                       rng=np.random.default_rng(spec.jitter_seed), device=device, backend=backend)
