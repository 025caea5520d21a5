"""Does the prior understand the prompt? The job's notices for the artist.

A trained prior's folder lists the motions it learnt (``learnt_motions.json``: each motion's
caption templates, ``{n}`` standing for the object's noun). The prompt's motion phrase (the prompt
without its subject: sentence vectors are dominated by nouns) is compared in the packaged sentence
encoder's space (``priors.minilm``) with every learnt caption's motion phrase. When the best cosine
similarity is below the folder's ``threshold``, the job carries a notice naming the nearest learnt
motions. After the job, a result that barely moves for a prompt nearest a moving motion carries a
warning too.

Priors without that file (the tiny test prior, hub checkpoints) get no understanding report.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animus3d_shared.deformation import Animation
from animus3d_shared.splat import GaussianSplat

LEARNT_MOTIONS = "learnt_motions.json"
DEFAULT_THRESHOLD = 0.55
NEGLIGIBLE_MOTION = 0.01  # largest typical displacement below this fraction of the object's size
NEAREST_SHOWN = 3

_DETERMINERS = {"a", "an", "the", "this", "that", "my", "your", "our", "his", "her", "its", "their", "one", "some"}
_WORD = re.compile(r"[a-z']+")


class LearntMotionsError(ValueError):
    """A prior's ``learnt_motions.json`` is unreadable or malformed."""


@dataclass(frozen=True)
class LearntMotions:
    """The motions a prior learnt: label → caption templates (``{n}`` is the noun)."""

    motions: dict[str, tuple[str, ...]]
    static: frozenset[str]
    threshold: float

    @classmethod
    def from_json(cls, data: object) -> "LearntMotions":
        if not isinstance(data, dict) or not isinstance(data.get("motions"), dict) or not data["motions"]:
            raise LearntMotionsError("expected an object with a non-empty 'motions' map")
        motions: dict[str, tuple[str, ...]] = {}
        for label, templates in data["motions"].items():
            if not isinstance(templates, list) or not templates or not all(isinstance(t, str) for t in templates):
                raise LearntMotionsError(f"motion {label!r} needs a non-empty list of caption templates")
            motions[str(label)] = tuple(templates)
        static = data.get("static", [])
        threshold = data.get("threshold", DEFAULT_THRESHOLD)
        if not isinstance(static, list) or not set(static) <= set(motions):
            raise LearntMotionsError("'static' must list learnt motion labels")
        if not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
            raise LearntMotionsError("'threshold' must be a number between 0 and 1")
        return cls(motions, frozenset(static), float(threshold))

    @classmethod
    def read(cls, folder: str | Path) -> "LearntMotions | None":
        """The file in a prior folder, or None when the folder has none."""
        path = Path(folder) / LEARNT_MOTIONS
        if not path.is_file():
            return None
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise LearntMotionsError(f"{path}: {exc}") from None


def motion_phrase(text: str) -> str:
    """The text without its subject: "the red lamp spins slowly" → "spins slowly".

    A leading determiner and the words after it up to the first verb-like word (ending in -s, -ing
    or -ed) are dropped; text without such a word within four words is kept whole."""
    words = _WORD.findall(text.lower().replace("{n}", "thing"))
    if not words:
        return text.strip()
    if words[0] not in _DETERMINERS:
        return " ".join(words)
    for i, word in enumerate(words[1:6], start=1):
        if i > 1 and _verb_like(word):
            return " ".join(words[i:])
    return " ".join(words)


def _verb_like(word: str) -> bool:
    return (word.endswith("ing") and len(word) > 4) or (word.endswith("ed") and len(word) > 4) or \
        (word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 2)


def _sides(text: str) -> set[str]:
    return set(_WORD.findall(text.lower())) & {"left", "right"}


@dataclass(frozen=True)
class Understanding:
    """How a prompt relates to the motions a prior learnt."""

    prompt: str
    phrase: str
    nearest: tuple[tuple[str, float], ...]  # (label, cosine similarity), best first
    threshold: float
    static: frozenset[str]

    @property
    def understood(self) -> bool:
        return self.nearest[0][1] >= self.threshold

    @property
    def moving(self) -> bool:
        """The nearest learnt motion moves (not a "stand still" one)."""
        return self.nearest[0][0] not in self.static

    def notice(self) -> str | None:
        if self.understood:
            return None
        names = ", ".join(f"{label} ({sim:.2f})" for label, sim in self.nearest[:NEAREST_SHOWN])
        return (f"not understood: {self.phrase!r} is far from every motion this prior learnt "
                f"(best similarity {self.nearest[0][1]:.2f} < {self.threshold:.2f}); the nearest are {names}. "
                f"The animation may not be what you asked for: try one of those in plain words.")


def understand(prompt: str, learnt: LearntMotions) -> Understanding:
    """Compares ``prompt``'s motion phrase with every learnt caption (best caption per motion)."""
    from .priors.minilm import sentence_encoder

    labels, phrases = [], []
    for label, templates in learnt.motions.items():
        for template in templates:
            labels.append(label)
            phrases.append(motion_phrase(template))
    phrase = motion_phrase(prompt)
    vectors = sentence_encoder().embed([phrase, *phrases]).numpy()
    sims = vectors[1:] @ vectors[0]
    # The encoder places "left" and "right" almost on top of each other: a prompt naming one side
    # only is not matched with captions naming only the other.
    side = _sides(phrase)
    best: dict[str, float] = {}
    for label, caption, sim in zip(labels, phrases, sims):
        if len(side) == 1 and _sides(caption) and not _sides(caption) & side:
            continue
        best[label] = max(best.get(label, -1.0), float(sim))
    if not best:
        best = {label: -1.0 for label in learnt.motions}
    nearest = tuple(sorted(best.items(), key=lambda item: -item[1]))
    return Understanding(prompt, phrase, nearest, learnt.threshold, learnt.static)


def motion_size(splat: GaussianSplat, animation: Animation) -> float:
    """The largest (over frames) 90th-percentile displacement of the Gaussians, as a fraction of the
    splat's bounding-box diagonal."""
    means = np.asarray(splat.means, np.float64)
    extent = float(np.linalg.norm(means.max(0) - means.min(0))) if len(means) else 0.0
    if extent <= 0.0:
        return 0.0
    moved = np.linalg.norm(np.asarray(animation.delta_position, np.float64), axis=-1)  # [T, N]
    return float(np.percentile(moved, 90, axis=1).max()) / extent


def result_warning(understanding: Understanding | None, splat: GaussianSplat, animation: Animation) -> str | None:
    """A warning when the prompt asks for motion and the result barely moves."""
    if understanding is None or not understanding.moving:
        return None
    size = motion_size(splat, animation)
    if size >= NEGLIGIBLE_MOTION:
        return None
    return (f"negligible motion: the prompt reads as {understanding.nearest[0][0]!r} but the result moves at most "
            f"{100 * size:.2f} % of the object's size; try more steps (--set msd_steps=...) or another seed")


def prompt_report(prompt: str, prior) -> tuple[Understanding | None, list[str]]:
    """The pipeline's hook before optimisation: (understanding or None, notices)."""
    folder = getattr(prior, "folder", None)
    learnt = LearntMotions.read(folder) if folder is not None else None
    if learnt is None:
        return None, []
    from .priors.minilm import EncoderMissing

    try:
        result = understand(prompt, learnt)
    except EncoderMissing as exc:  # the job runs; only the check of the prompt is lost
        return None, [f"prompt not checked: {exc}"]
    notice = result.notice()
    return result, ([notice] if notice else [])
