"""The held-out split is disjoint from training, and its suite is the one the split defines."""

import json

from animus3d_lab import heldout
from animus3d_lab import motion_data as md
from animus3d_lab.evaluation import load_suite
from animus3d_lab.train_prior import TrainConfig


def test_no_held_out_word_or_noun_occurs_in_any_training_caption():
    split = heldout.load_split()
    assert heldout.leaks(heldout.training_captions(), split) == set()
    assert heldout.leaks(["the fox twirls"], split) == {"fox", "twirls"}, "the check can fail"


def test_held_out_objects_are_never_training_objects():
    split = heldout.load_split()
    first, last = split["object_seeds"]
    assert last < TrainConfig().first_object_seed
    assert tuple(split["families"]) == md.HELDOUT_FAMILIES and set(md.HELDOUT_FAMILIES) <= set(md.FAMILIES)
    assert not set(md.HELDOUT_FAMILIES) & set(md.KINDS)
    specs = md.clip_specs(2000, seed=3, objects_per_kind=50, first_object_seed=TrainConfig().first_object_seed)
    assert {s.kind for s in specs} == set(md.KINDS)  # every training family, no held-out one
    assert min(s.object_seed for s in specs) > last


def test_the_split_holds_out_nouns_for_every_family_and_paraphrases_for_every_motion():
    split = heldout.load_split()
    assert set(split["nouns"]) == set(md.FAMILIES) and all(len(v) >= 2 for v in split["nouns"].values())
    assert set(split["paraphrases"]) == set(md.MOTION_LABELS)
    assert all(len(v) >= 2 for v in split["paraphrases"].values())
    # every paraphrase carries at least one held-out word (a motion is not asked for in training words)
    for label, phrases in split["paraphrases"].items():
        for phrase in phrases:
            assert heldout.leaks([phrase.replace("{n}", "")], split), (label, phrase)
    # the trained motions are learnt on training families: each motion some training family can do
    assert {m for k in md.KINDS for m in md.KIND_MOTIONS[k]} == set(md.MOTION_LABELS)


def test_the_held_out_suite_is_the_split_s_and_covers_every_learnt_motion_twice():
    split = heldout.load_split()
    cases = heldout.heldout_cases(split)
    stored = [json.loads(line) for line in heldout.HELDOUT_SUITE.read_text().splitlines()]
    assert stored == cases
    assert len(cases) >= 60
    assert len(load_suite(heldout.HELDOUT_SUITE)) == len(cases)
    assert {c["expected"] for c in cases} == set(md.LEGACY_MOTIONS)
