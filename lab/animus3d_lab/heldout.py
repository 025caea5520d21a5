"""The held-out split: nouns, paraphrase words and objects that no training caption or sample uses.

``evals/split.json`` is the split, written down before any prior is trained on it: whole object
families (``families``), held-out nouns for every family, held-out paraphrases for every motion,
object seeds outside the training range. Built from it:

- ``evals/suite_heldout.jsonl`` (``heldout_cases``): every motion twice, once on a held-out family
  where one can do it, else on training families named by held-out nouns, always in held-out words;
- ``evals/suite_heldout13.jsonl`` (``first_heldout_cases``): the thirteen first motions on the four
  first families (the suite of priors trained on that vocabulary);
- ``evals/suite_train.jsonl`` (``training_cases``): every motion in training wording and nouns on
  training families (objects no training run uses), some with a speed or repetition word.

``leaks`` says which held-out words a set of training captions contains; a test checks every caption
``motion_data`` can generate.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import motion_data as md

REPO = Path(__file__).resolve().parents[2]
SPLIT_FILE = REPO / "evals" / "split.json"
HELDOUT_SUITE = REPO / "evals" / "suite_heldout.jsonl"
FIRST_HELDOUT_SUITE = REPO / "evals" / "suite_heldout13.jsonl"
TRAIN_SUITE = REPO / "evals" / "suite_train.jsonl"
# Everyday paraphrases of every learnt motion, three each, for tuning how prompts are read
# (``animus3d_worker.understanding``) without looking at the held-out suites.
DEV_PARAPHRASES = REPO / "evals" / "dev_paraphrases.jsonl"
TRAIN_SUITE_FIRST_SEED = 2000  # object seeds of the in-distribution suite: neither held out nor trained on
_WORD = re.compile(r"[a-z]+")


class SplitError(ValueError):
    """A held-out word reached the training captions, or the split file is malformed."""


def load_split(path: str | Path = SPLIT_FILE) -> dict:
    data = json.loads(Path(path).read_text())
    for key in ("families", "nouns", "paraphrases", "words", "object_seeds"):
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


def _article(prompt: str) -> str:
    return re.sub(r"\ba (?=[aeiou])", "an ", prompt)


def first_heldout_cases(split: dict) -> list[dict]:
    """For each of the four first families and each of its first motions
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
                              "prompt": _article(prompt), "expected": label, "count": 3000})
    return cases


def heldout_cases(split: dict) -> list[dict]:
    """Every motion twice in held-out paraphrases: the first case on a held-out family (``families``)
    when one can do the motion, the other cases on training families named by held-out nouns."""
    cases = []
    first, last = split["object_seeds"]
    families = [f for f in md.FAMILIES if f in split["families"]]
    for m, label in enumerate(md.MOTION_LABELS):
        phrases = split["paraphrases"][label]
        unseen = [f for f in families if label in md.KIND_MOTIONS[f]]
        trained = [f for f in md.KINDS if label in md.KIND_MOTIONS[f]]
        for j in range(2):
            kind = unseen[m % len(unseen)] if j == 0 and unseen else trained[(3 * m + j) % len(trained)]
            nouns = split["nouns"][kind]
            prompt = phrases[(m + j) % len(phrases)].format(n=nouns[(m + j) % len(nouns)])
            cases.append({"id": f"heldout-{kind}-{label}-{j}", "kind": kind, "seed": first + len(cases),
                          "prompt": _article(prompt), "expected": label, "count": 3000})
    if cases[-1]["seed"] > last:
        raise SplitError(f"the held-out suite needs more than the split's object seeds {first}-{last}")
    return cases


def training_cases() -> list[dict]:
    """Every motion once in training wording on a training family that can do it (objects no training
    run uses); every third case whose motion takes a modifier carries one."""
    cases = []
    for m, label in enumerate(md.MOTION_LABELS):
        trained = [f for f in md.KINDS if label in md.KIND_MOTIONS[f]]
        kind = trained[(5 * m) % len(trained)]
        options = md.modifiers_for(label)
        modifier = options[m % len(options)] if options and m % 3 == 0 else ""
        cases.append({"id": f"train-{kind}-{label}", "kind": kind, "seed": TRAIN_SUITE_FIRST_SEED + len(cases),
                      "prompt": _article(md.describe(kind, label, index=m, modifier=modifier)), "expected": label,
                      "count": 3000})
    return cases


def _write(cases: list[dict], out: str | Path) -> Path:
    Path(out).write_text("".join(json.dumps(c) + "\n" for c in cases))
    return Path(out)


def write_heldout_suite(split_path: str | Path = SPLIT_FILE, out: str | Path = HELDOUT_SUITE) -> Path:
    return _write(heldout_cases(load_split(split_path)), out)


def write_suites(split_path: str | Path = SPLIT_FILE) -> list[Path]:
    """Writes the three suites the split and the vocabulary define."""
    split = load_split(split_path)
    return [_write(heldout_cases(split), HELDOUT_SUITE), _write(first_heldout_cases(split), FIRST_HELDOUT_SUITE),
            _write(training_cases(), TRAIN_SUITE)]
