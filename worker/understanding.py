"""Does the prior understand the prompt? How it reads it, and the job's notices for the artist.

A trained prior's folder lists the motions it learnt (``learnt_motions.json``: each motion's
caption templates, ``{n}`` standing for the object's noun, and the speed/amplitude/repetition words
its captions carried). The prompt's motion phrase (the prompt without its subject, whose nouns
dominate sentence vectors) is compared in the packaged sentence
encoder's space (``priors.minilm``) with every learnt caption's motion phrase.

- Read (best cosine similarity at or above the folder's ``read_threshold``): the prompt is *read*
  as the nearest learnt caption, with the prompt's own subject and learnt modifier words ("the goat
  revolves quickly" → "the goat turns around in place quickly"), and the motion prior is conditioned on
  that reading (setting ``read_prompt``; the job reports it). The sentence encoder was trained on a
  billion sentence pairs; the prior's cross-attention only on its training captions, so wording the
  prior never saw is better matched by the former. Below ``threshold`` (understood) the reading
  carries a notice that it is unsure and names the nearest learnt motions.
- Not read (below ``read_threshold``): the prompt is used as typed and the job carries a notice
  naming the nearest learnt motions.
- A prompt read as a motion that stands still (the file's ``static`` labels) is not animated: the
  job returns the object unmoved.

After the job, a result that barely moves for a prompt nearest a moving motion carries a warning.

Priors without that file (the tiny test prior, hub checkpoints) get no understanding report.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from animus3d_shared.deformation import Animation
from animus3d_shared.splat import GaussianSplat

LEARNT_MOTIONS = "learnt_motions.json"
DEFAULT_THRESHOLD = 0.55
# On evals/dev_paraphrases.jsonl the nearest learnt motion is right for 108 of the 112 prompts at or
# above 0.45 (96 %) and 98 of 100 at or above 0.55; `python -m animus3d_lab.reading` prints the table.
DEFAULT_READ_THRESHOLD = 0.45
NEGLIGIBLE_MOTION = 0.01  # largest typical displacement below this fraction of the object's size
NEAREST_SHOWN = 3

_DETERMINERS = {"a", "an", "the", "this", "that", "my", "your", "our", "his", "her", "its", "their", "one", "some"}
_WORD = re.compile(r"[a-z']+")
_OWN_SIDE = re.compile(r"\b(?:its|the|his|her|their) (left|right) [a-z{]")
# Captions whose left or right is a way of turning rather than of travelling ("spins to the left",
# "turns to the left", "looks to the left").
_TURNING = {"turn", "turns", "turning", "spin", "spins", "spinning", "rotate", "rotates", "rotating", "look",
            "looks", "looking", "face", "faces", "facing"}


class LearntMotionsError(ValueError):
    """A prior's ``learnt_motions.json`` is unreadable or malformed."""


@dataclass(frozen=True)
class LearntMotions:
    """The motions a prior learnt: label → caption templates (``{n}`` is the noun)."""

    motions: dict[str, tuple[str, ...]]
    static: frozenset[str]
    threshold: float
    modifiers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # label → words its captions may end with
    read_threshold: float = DEFAULT_READ_THRESHOLD

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
        read_threshold = data.get("read_threshold", min(DEFAULT_READ_THRESHOLD, threshold))
        if not isinstance(read_threshold, (int, float)) or not 0.0 < read_threshold <= threshold:
            raise LearntMotionsError("'read_threshold' must be a number above 0 and at most 'threshold'")
        modifiers = data.get("modifiers", {})
        if not isinstance(modifiers, dict) or not set(modifiers) <= set(motions) or not all(
                isinstance(words, list) and all(isinstance(w, str) and _WORD.fullmatch(w.replace(" ", ""))
                                                for w in words) for words in modifiers.values()):
            raise LearntMotionsError("'modifiers' must map learnt motion labels to lists of lower-case words")
        return cls(motions, frozenset(static), float(threshold),
                   {str(label): tuple(words) for label, words in modifiers.items()}, float(read_threshold))

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
    return _subject_and_phrase(text)[1]


def _subject_and_phrase(text: str) -> tuple[str, str]:
    """The subject and the motion phrase: ("red lamp", "spins slowly") for "the red lamp spins
    slowly". A prompt that does not open with its subject ("make the dog nod") gives the word after
    its first determiner ("dog") and the whole prompt; one without a determiner gives ("", prompt)."""
    words = _WORD.findall(text.lower().replace("{n}", "thing"))
    if not words:
        return "", text.strip()
    if words[0] in _DETERMINERS:
        for i, word in enumerate(words[1:6], start=1):
            if i > 1 and _verb_like(word):
                return " ".join(words[1:i]), " ".join(words[i:])
    following = [words[i + 1] for i, word in enumerate(words[:-1]) if word in _DETERMINERS]
    subject = following[0].removesuffix("'s") if following else ""
    return subject, " ".join(words)


_AUXILIARIES = {"is", "are", "was", "were", "be", "keeps"}  # "the teddy bear is walking": the phrase starts here


def _verb_like(word: str) -> bool:
    return word in _AUXILIARIES or (word.endswith("ing") and len(word) > 4) or (word.endswith("ed") and len(word) > 4) or \
        (word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 2)


def _sides(text: str) -> set[str]:
    return set(_WORD.findall(text.lower())) & {"left", "right"}


@dataclass(frozen=True)
class Understanding:
    """How a prompt relates to the motions a prior learnt."""

    prompt: str
    phrase: str  # the prompt's motion phrase
    nearest: tuple[tuple[str, float], ...]  # (label, cosine similarity), best first
    threshold: float
    static: frozenset[str]
    caption: str = ""  # the nearest motion's best-matching caption template
    subject: str = ""  # the prompt's subject ("red lamp"), "" when it has none the reading can use
    modifier: str = ""  # a modifier word of the prompt that the nearest motion learnt ("slowly")
    read_threshold: float = DEFAULT_READ_THRESHOLD

    @property
    def understood(self) -> bool:
        return self.nearest[0][1] >= self.threshold

    @property
    def readable(self) -> bool:
        """Near enough a learnt motion to be read as it (surely when ``understood``)."""
        return self.nearest[0][1] >= min(self.read_threshold, self.threshold)

    @property
    def stays_still(self) -> bool:
        """Read as a motion that does not move ("the vase stays motionless")."""
        return self.readable and bool(self.caption) and not self.moving

    @property
    def moving(self) -> bool:
        """The nearest learnt motion moves (not a "stand still" one)."""
        return self.nearest[0][0] not in self.static

    @property
    def reading(self) -> str | None:
        """The learnt caption the prompt reads as, with its own subject and modifier; None when the
        prompt is not read."""
        if not self.readable or not self.caption:
            return None
        noun = self.subject or "object"
        template = self.caption
        if template.startswith("a {n}") and noun[0] in "aeiou":
            template = "an" + template[1:]
        reading = template.format(n=noun)
        if self.modifier and f" {self.modifier}" not in f" {reading}":
            reading += f" {self.modifier}"
        return reading

    @property
    def own_side(self) -> str | None:
        """"left" or "right" when the nearest learnt caption names a side of the object itself ("its
        left arm", "the right hand"), not a direction ("to the left"); None otherwise or when the
        prompt is not read."""
        found = _OWN_SIDE.search(self.caption) if self.readable else None
        return found.group(1) if found else None

    @property
    def heading(self) -> str | None:
        """"left" or "right" when the nearest learnt caption names a direction of travel as the front
        camera sees it ("sliding to the left", "gliding right"), not a side of the object or a way of
        turning ("spins to the left"); None otherwise or when the prompt is not read."""
        if not self.readable or self.own_side is not None or set(_WORD.findall(self.caption)) & _TURNING:
            return None
        sides = _sides(self.caption)
        return next(iter(sides)) if len(sides) == 1 else None

    def notice(self, read: bool = True) -> str | None:
        """The notice for the artist, or None when the prompt is understood; ``read``: whether the job
        conditions the prior on the reading (setting ``read_prompt``)."""
        if self.understood:
            return None
        names = ", ".join(f"{label} ({sim:.2f})" for label, sim in self.nearest[:NEAREST_SHOWN])
        if read and self.readable and self.caption:
            return (f"unsure: {self.phrase!r} is only near the motions this prior learnt (best similarity "
                    f"{self.nearest[0][1]:.2f} < {self.threshold:.2f}), so it is read as the nearest, "
                    f"{self.nearest[0][0]}; the nearest are {names}. If that is not what you asked for, "
                    f"try one of them in plain words.")
        return (f"not understood: {self.phrase!r} is far from every motion this prior learnt "
                f"(best similarity {self.nearest[0][1]:.2f} < {self.threshold:.2f}); the nearest are {names}. "
                f"The animation may not be what you asked for: try one of those in plain words.")


@functools.lru_cache(maxsize=4)
def _phrase_vectors(phrases: tuple[str, ...]) -> np.ndarray:
    """The sentence vectors of a prior's learnt caption phrases, computed once per list."""
    from .priors.minilm import sentence_encoder

    vectors = sentence_encoder().embed(list(phrases)).numpy()
    vectors.setflags(write=False)
    return vectors


def understand(prompt: str, learnt: LearntMotions) -> Understanding:
    """Compares ``prompt``'s motion phrase with every learnt caption (best caption per motion)."""
    from .priors.minilm import sentence_encoder

    captions = [(label, template, motion_phrase(template))
                for label, templates in learnt.motions.items() for template in templates]
    subject, phrase = _subject_and_phrase(prompt)
    sims = _phrase_vectors(tuple(c[2] for c in captions)) @ sentence_encoder().embed([phrase]).numpy()[0]
    # The encoder places "left" and "right" almost on top of each other: a prompt naming one side
    # only is not matched with captions naming only the other.
    side = _sides(phrase)
    best: dict[str, tuple[float, str]] = {}
    for (label, template, caption), sim in zip(captions, sims):
        if len(side) == 1 and _sides(caption) and not _sides(caption) & side:
            continue
        if float(sim) > best.get(label, (-1.0, ""))[0]:
            best[label] = (float(sim), template)
    if not best:
        best = {label: (-1.0, templates[0]) for label, templates in learnt.motions.items()}
    ranked = sorted(best.items(), key=lambda item: -item[1][0])
    label, (_, template) = ranked[0]
    padded = f" {' '.join(_WORD.findall(prompt.lower()))} "
    modifier = next((word for word in sorted(learnt.modifiers.get(label, ()), key=len, reverse=True)
                     if f" {word} " in padded), "")
    return Understanding(prompt, phrase, tuple((lab, sim) for lab, (sim, _) in ranked), learnt.threshold,
                         learnt.static, template, subject, modifier, learnt.read_threshold)


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


def prompt_report(prompt: str, prior, read: bool = True) -> tuple[Understanding | None, list[str]]:
    """The pipeline's hook before optimisation: (understanding or None, notices); ``read``: whether the
    job conditions the prior on the reading."""
    folder = getattr(prior, "folder", None)
    learnt = LearntMotions.read(folder) if folder is not None else None
    if learnt is None:
        return None, []
    from .priors.minilm import EncoderMissing

    try:
        result = understand(prompt, learnt)
    except EncoderMissing as exc:  # the job runs; only the check of the prompt is lost
        return None, [f"prompt not checked: {exc}"]
    notice = result.notice(read)
    return result, ([notice] if notice else [])
