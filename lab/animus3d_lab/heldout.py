"""The held-out split: nouns, paraphrase words and objects that no training caption or sample uses.

``evals/split.json`` is the split, written down before any prior is trained on the MiniLM text
side; ``evals/suite_heldout.jsonl`` holds the held-out evaluation cases built from it by
``heldout_cases`` (every learnt motion of every kind, two held-out paraphrases each, held-out
nouns, object seeds outside the training range). ``leaks`` says which held-out words a set of
training captions contains; a test checks every caption ``motion_data`` can generate.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import motion_data as md

REPO = Path(__file__).resolve().parents[2]
SPLIT_FILE = REPO / "evals" / "split.json"
HELDOUT_SUITE = REPO / "evals" / "suite_heldout.jsonl"
_WORD = re.compile(r"[a-z]+")


class SplitError(ValueError):
    """A held-out word reached the training captions, or the split file is malformed."""


def load_split(path: str | Path = SPLIT_FILE) -> dict:
    data = json.loads(Path(path).read_text())
    for key in ("nouns", "paraphrases", "words", "object_seeds"):
        if key not in data:
            raise SplitError(f"{path}: missing {key!r}")
    return data


def training_captions() -> list[str]:
    """Every caption the synthetic data can give a training clip (templates × nouns × modifiers × mirrors)."""
    captions = []
    for kind in md.KINDS:
        for label in md.KIND_MOTIONS[kind]:
            for caption in md.all_captions(kind, label):
                captions += [caption, md.mirror_caption(caption)]
    return captions


def leaks(captions: list[str], split: dict) -> set[str]:
    """The held-out nouns and words that occur in ``captions`` (whole words, case-insensitive)."""
    held = {w.lower() for w in split["words"]}
    for nouns in split["nouns"].values():
        held |= {w for noun in nouns for w in _WORD.findall(noun.lower())}
    seen = {w for caption in captions for w in _WORD.findall(caption.lower())}
    return held & seen


def heldout_cases(split: dict) -> list[dict]:
    """The held-out suite: for each of the four first families and each of its first motions
    (``motion_data.LEGACY_KIND_MOTIONS``), two held-out paraphrases."""
    cases = []
    first, _ = split["object_seeds"]
    for k, kind in enumerate(md.LEGACY_KINDS):
        nouns = split["nouns"][kind]
        for m, label in enumerate(md.LEGACY_KIND_MOTIONS[kind]):
            phrases = split["paraphrases"][label]
            for j in range(2):
                index = k + m + j
                prompt = phrases[index % len(phrases)].format(n=nouns[index % len(nouns)])
                cases.append({"id": f"heldout-{kind}-{label}-{j}", "kind": kind, "seed": first + len(cases),
                              "prompt": re.sub(r"\ba (?=[aeiou])", "an ", prompt),
                              "expected": label, "count": 3000})
    return cases


def write_heldout_suite(split_path: str | Path = SPLIT_FILE, out: str | Path = HELDOUT_SUITE) -> Path:
    cases = heldout_cases(load_split(split_path))
    Path(out).write_text("".join(json.dumps(c) + "\n" for c in cases))
    return Path(out)
