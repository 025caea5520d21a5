"""The static prompt of a job: what the subject is, without its motion (one derivation for every caller)."""

from __future__ import annotations

MOTION_VERBS = frozenset({
    "waves", "wave", "jumps", "jump", "spins", "spin", "turns", "turn", "walks", "walk", "nods", "nod",
    "sways", "sway", "dances", "dance", "runs", "run", "raises", "raise", "tilts", "tilt", "bounces",
    "bounce", "grows", "shrinks", "slides", "rotates", "flies", "swims", "is", "moves", "shakes",
})


def derive_static_prompt(prompt: str) -> str:
    """A static description from a motion prompt: the subject, standing still."""
    words = prompt.strip().rstrip(".").split()
    for i, word in enumerate(words):
        if word.lower() in MOTION_VERBS and i > 0:
            return " ".join(words[:i]) + ", standing still, static"
    return f"{prompt.strip().rstrip('.')}, not moving, static"
