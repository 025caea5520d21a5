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


def test_the_stored_suites_are_the_ones_the_split_and_vocabulary_define():
    split = heldout.load_split()
    for path, cases in ((heldout.HELDOUT_SUITE, heldout.heldout_cases(split)),
                        (heldout.FIRST_HELDOUT_SUITE, heldout.first_heldout_cases(split)),
                        (heldout.TRAIN_SUITE, heldout.training_cases())):
        assert [json.loads(line) for line in path.read_text().splitlines()] == cases, path
        assert len(load_suite(path)) == len(cases)
        assert len({c["id"] for c in cases}) == len(cases) and len({c["seed"] for c in cases}) == len(cases)
        assert all(c["expected"] in md.KIND_MOTIONS[c["kind"]] for c in cases)


def test_the_held_out_suite_covers_every_motion_twice_in_held_out_words_families_and_nouns():
    split = heldout.load_split()
    cases = heldout.heldout_cases(split)
    assert 60 <= len(cases) <= 90
    assert sorted(c["expected"] for c in cases) == sorted(2 * md.MOTION_LABELS)
    assert {c["kind"] for c in cases} >= set(md.HELDOUT_FAMILIES)
    first, last = split["object_seeds"]
    assert all(first <= c["seed"] <= last for c in cases)
    for c in cases:
        assert heldout.leaks([c["prompt"]], split), c  # a held-out noun or word in every prompt
        if c["kind"] in md.KINDS:
            assert any(noun in c["prompt"] for noun in split["nouns"][c["kind"]]), c
    first13 = heldout.first_heldout_cases(split)
    assert len(first13) == 82 and {c["expected"] for c in first13} == set(md.LEGACY_MOTIONS)


def test_the_in_distribution_suite_uses_training_words_families_and_unseen_objects():
    split = heldout.load_split()
    cases = heldout.training_cases()
    assert 36 <= len(cases) <= 60 and {c["expected"] for c in cases} == set(md.MOTION_LABELS)
    assert heldout.leaks([c["prompt"] for c in cases], split) == set()
    assert {c["kind"] for c in cases} <= set(md.KINDS)
    assert any(c["prompt"].endswith(("slowly", "quickly", "twice", "over and over")) for c in cases)
    train_first = TrainConfig().first_object_seed
    assert all(split["object_seeds"][1] < c["seed"] < train_first for c in cases)


def test_the_tuning_paraphrases_use_no_held_out_word_and_cover_every_learnt_motion():
    split = heldout.load_split()
    cases = [json.loads(line) for line in heldout.DEV_PARAPHRASES.read_text().splitlines() if line.strip()]
    assert heldout.leaks([c["prompt"] for c in cases], split) == set()
    learnt = md.learnt_motions_document()["motions"]
    counts = {label: sum(c["expected"] == label for c in cases) for label in learnt}
    assert set(c["expected"] for c in cases) <= set(learnt) and min(counts.values()) >= 3, counts
    assert len({c["id"] for c in cases}) == len(cases)


def test_prompts_read_at_the_default_threshold_are_mostly_read_right_on_the_tuning_set():
    from animus3d_lab import reading
    from animus3d_worker.understanding import DEFAULT_READ_THRESHOLD, DEFAULT_THRESHOLD

    readings = reading.read_suite(heldout.DEV_PARAPHRASES)
    table = {t: (read, right) for t, read, right in
             reading.threshold_table(readings, (DEFAULT_READ_THRESHOLD, DEFAULT_THRESHOLD))}
    read, right = table[DEFAULT_READ_THRESHOLD]
    assert read >= 0.9 * len(readings) and right >= 0.95 * read, table
    assert table[DEFAULT_THRESHOLD][0] < read, "the read threshold reads more prompts than the understood one"
    assert all((r.reading is not None) == (r.similarity >= DEFAULT_READ_THRESHOLD) for r in readings)
