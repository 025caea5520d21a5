"""The held-out split is disjoint from training, and its suite is the one the split defines."""

import json

from animus3d_lab import heldout
from animus3d_lab.evaluation import load_suite
from animus3d_lab.train_prior import TrainConfig


def test_no_held_out_word_or_noun_occurs_in_any_training_caption():
    split = heldout.load_split()
    assert heldout.leaks(heldout.training_captions(), split) == set()
    assert heldout.leaks(["the fox twirls"], split) == {"fox", "twirls"}, "the check can fail"


def test_held_out_objects_are_never_training_objects():
    first, last = heldout.load_split()["object_seeds"]
    assert last < TrainConfig().first_object_seed


def test_the_held_out_suite_is_the_split_s_and_covers_every_learnt_motion_twice():
    split = heldout.load_split()
    cases = heldout.heldout_cases(split)
    stored = [json.loads(line) for line in heldout.HELDOUT_SUITE.read_text().splitlines()]
    assert stored == cases
    assert len(cases) >= 60
    assert len(load_suite(heldout.HELDOUT_SUITE)) == len(cases)
    assert {c["expected"] for c in cases} == set(split["paraphrases"])
