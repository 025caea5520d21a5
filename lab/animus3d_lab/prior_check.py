"""Does a video prior know the motions? A diffusion-classifier check on held-out synthetic clips.

MSD can only produce a motion the prior's scores tell apart from the others. This check measures
that directly, without the pipeline: for a clip of known motion, noise its latents at a few
timesteps (the same noise for every candidate) and ask the prior for ε̂ under one caption per
candidate motion; the candidate whose ε̂ is closest to the true noise is the prior's guess (the
"diffusion classifier" of Li et al. 2023). Accuracy over clips it never saw in training is the
prior's motion recognition; chance is 1 / (motions allowed for the kind).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

import re

from .motion_data import KIND_MOTIONS, build_clip, clip_specs, describe, make_object, motion_animation, render_clip
from animus3d_worker.priors.scoring import TIMESTEPS, denoising_errors

HELD_OUT_SEED = 777  # clip_specs seed of the check's clips (the shipped prior's runs used data seeds 0-2)
# With new_objects: object seeds no training run uses (train_prior starts new runs at 10000 and draws
# 2000 a kind; a config without objects_per_kind trained on seeds 0-5, the check's default objects).
HELD_OUT_OBJECT_SEED = 1_000_000
NEW_OBJECTS_PER_KIND = 1000


@dataclass
class PriorCheckResult:
    clips: int = 0
    correct: int = 0
    chance: float = 0.0  # expected accuracy of a uniform guess over each clip's candidates
    per_label: dict[str, list[int]] = field(default_factory=dict)  # label -> [correct, total]
    confusions: list[tuple[str, str]] = field(default_factory=list)  # (expected, guessed) of each miss

    @property
    def accuracy(self) -> float:
        return self.correct / self.clips if self.clips else 0.0

    def add(self, expected: str, guess: str, chance: float) -> None:
        """Counts one classified clip (``chance``: 1 / its number of candidates)."""
        hit = guess == expected
        self.clips += 1
        self.correct += int(hit)
        self.chance = (self.chance * (self.clips - 1) + chance) / self.clips
        tally = self.per_label.setdefault(expected, [0, 0])
        tally[0] += int(hit)
        tally[1] += 1
        if not hit:
            self.confusions.append((expected, guess))

    def to_json(self) -> dict:
        return {"clips": self.clips, "correct": self.correct, "accuracy": round(self.accuracy, 4),
                "chance": round(self.chance, 4), "per_label": self.per_label,
                "confusions": [list(c) for c in self.confusions]}


@torch.no_grad()
def classify_clip(prior, frames: torch.Tensor, kind: str, *, timesteps=TIMESTEPS, seed: int = 0,
                  caption_index: int = 0) -> tuple[str, dict[str, float]]:
    """The prior's guess for one clip ``[T, 3, H, W]``: (label, mean noise-prediction error per label)."""
    labels = KIND_MOTIONS[kind]
    text = prior.encode_text([describe(kind, label, index=caption_index) for label in labels])
    latents = prior.encode_frames(frames[None].to(prior.device))
    errors = denoising_errors(prior, latents, text, timesteps=timesteps,
                              generator=torch.Generator().manual_seed(seed))[0]
    scores = {label: float(e) for label, e in zip(labels, errors)}
    return labels[int(errors.argmin())], scores


def check_prior(prior, clips: int = 52, *, frames: int = 16, resolution: int = 64, seed: int = HELD_OUT_SEED,
                timesteps=TIMESTEPS, backend: str = "auto", progress=None,
                new_objects: bool = False) -> PriorCheckResult:
    """Motion recognition of ``prior`` on ``clips`` held-out synthetic clips (front and orbit views).

    The clips' objects are seeds 0-5 of each kind (the objects of a config without objects_per_kind), or
    with ``new_objects`` objects that no training run uses."""
    result = PriorCheckResult()
    objects = (dict(objects_per_kind=NEW_OBJECTS_PER_KIND, first_object_seed=HELD_OUT_OBJECT_SEED)
               if new_objects else {})
    for i, spec in enumerate(clip_specs(clips, seed=seed, **objects)):
        clip = build_clip(spec, frames=frames, resolution=resolution, device=str(prior.device), backend=backend)
        guess, _ = classify_clip(prior, clip, spec.kind, timesteps=timesteps, seed=i, caption_index=i)
        result.add(spec.label, guess, 1.0 / len(KIND_MOTIONS[spec.kind]))
        if progress:
            progress(i + 1, clips, result)
    return result


def confusion_summary(result: PriorCheckResult, top: int = 5) -> list[tuple[str, str, int]]:
    """The most frequent (expected, guessed) confusions."""
    return [(expected, guessed, n) for (expected, guessed), n in Counter(result.confusions).most_common(top)]


def _article(text: str) -> str:
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def _worded_like(case: dict, nouns: list[str], phrases: dict[str, list[str]],
                 article: bool = True) -> list[tuple[str, str]] | None:
    """(label, caption) for every motion of the case's kind in the paraphrase slot and noun of its
    prompt among ``phrases`` (templates with ``{n}``), or None when the prompt is not one of them.
    ``article``: captions with "an" before a vowel, as the suites write prompts (training captions
    are the templates as they are)."""
    kind, prompt = case["kind"], case["prompt"]
    nouns = [n for n in nouns if re.search(rf"\b{re.escape(n)}\b", prompt)]
    found = [(n, j) for j, phrase in enumerate(phrases[case["expected"]]) for n in nouns
             if _article(phrase.format(n=n)) == prompt]
    if not found:
        return None
    noun, slot = found[0]
    worded = [(label, phrases[label][slot % len(phrases[label])].format(n=noun)) for label in KIND_MOTIONS[kind]]
    return [(label, _article(caption) if article else caption) for label, caption in worded]


def case_candidates(case: dict, split: dict) -> list[tuple[str, str]]:
    """(label, caption) for every motion the case's kind can do, each worded as the case's prompt is:
    the same noun and the same paraphrase slot, of the split's held-out paraphrases or of the training
    templates (the case's own prompt, without a trailing speed or repetition word, is the expected
    label's caption: the case's clip is the motion's plain clip; training captions are worded exactly
    as the prior was trained on them)."""
    from .motion_data import DESCRIPTIONS, MODIFIERS, NOUNS

    held_out = _worded_like(case, split["nouns"][case["kind"]], split["paraphrases"])
    if held_out is not None:
        return held_out
    prompt = case["prompt"]
    for word in sorted(MODIFIERS, key=len, reverse=True):
        if prompt.endswith(" " + word):
            prompt = prompt[: -len(word) - 1]
            break
    training = _worded_like({**case, "prompt": prompt}, NOUNS[case["kind"]], DESCRIPTIONS, article=False)
    if training is None:
        raise ValueError(f"case {case.get('id')}: prompt {case['prompt']!r} is neither one of the split's "
                         f"paraphrases nor a training caption")
    return training


def classify_case(prior, case: dict, split: dict, seed: int, *, frames: int = 16, resolution: int = 64,
                  gaussians: int = 1500, timesteps=TIMESTEPS, backend: str = "auto") -> tuple[str, float]:
    """(the prior's guess, chance) for one suite case: the ground-truth clip of its expected motion on
    its object (front view), classified among captions worded like its prompt (``case_candidates``)."""
    candidates = case_candidates(case, split)
    obj = make_object(case["kind"], int(case["seed"]), gaussians)
    clip = render_clip(obj, motion_animation(obj, case["expected"], frames), resolution=resolution,
                       device=str(prior.device), backend=backend)
    with torch.no_grad():
        text = prior.encode_text([caption for _, caption in candidates])
        latents = prior.encode_frames(clip[None].to(prior.device))
        errors = denoising_errors(prior, latents, text, timesteps=timesteps,
                                  generator=torch.Generator().manual_seed(seed))[0]
    return candidates[int(errors.argmin())][0], 1.0 / len(candidates)


def check_prior_on_cases(prior, cases: list[dict], split: dict, *, frames: int = 16, resolution: int = 64,
                         gaussians: int = 1500, timesteps=TIMESTEPS, backend: str = "auto",
                         progress=None, done: dict[str, dict] | None = None, on_case=None) -> PriorCheckResult:
    """Motion recognition in the suite's own wording (``classify_case`` for each case; held-out cases
    test wording and objects the prior never saw). ``done``: outcomes of cases already classified, by
    id (``{"guess", "chance"}``), counted without running them again; ``on_case(case, guess, chance)``
    after each classified case (a resumable log). A case's noise depends on its place in ``cases``."""
    result = PriorCheckResult()
    for i, case in enumerate(cases):
        row = (done or {}).get(case.get("id"))
        if row is not None:
            guess, chance = row["guess"], row["chance"]
        else:
            guess, chance = classify_case(prior, case, split, i, frames=frames, resolution=resolution,
                                          gaussians=gaussians, timesteps=timesteps, backend=backend)
            if on_case:
                on_case(case, guess, chance)
        result.add(case["expected"], guess, chance)
        if progress:
            progress(i + 1, len(cases), result)
    return result


def evaluation_captions(split: dict) -> list[str]:
    """Every caption the checks can score: the training wording of every motion and the split's
    held-out paraphrases with its held-out nouns (for a transport copy of the text encoder)."""
    from .motion_data import KINDS, all_descriptions

    captions = {c for kind in KINDS for label in KIND_MOTIONS[kind] for c in all_descriptions(kind, label)}
    for kind, nouns in split["nouns"].items():
        for phrases in split["paraphrases"].values():
            captions |= {_article(phrase.format(n=noun)) for phrase in phrases for noun in nouns}
    return sorted(captions)
