"""The prior motion check: a diffusion classifier over held-out synthetic clips (tiny prior, CPU)."""

import json

import pytest

from animus3d_lab.motion_data import KIND_MOTIONS, build_clip, clip_specs
from animus3d_lab.prior_check import check_prior, classify_clip
from animus3d_worker.priors import load_prior


@pytest.fixture(scope="module")
def prior():
    return load_prior("tiny")


def test_classify_clip_scores_every_allowed_motion_the_same_way_twice(prior):
    spec = clip_specs(1, seed=5)[0]
    clip = build_clip(spec, frames=4, resolution=32, count=200)
    guess, scores = classify_clip(prior, clip, spec.kind, timesteps=(300, 700))
    assert set(scores) == set(KIND_MOTIONS[spec.kind])
    assert guess == min(scores, key=scores.get)
    assert classify_clip(prior, clip, spec.kind, timesteps=(300, 700)) == (guess, scores)  # same noise


def test_check_prior_tallies_each_clip_once(prior):
    result = check_prior(prior, clips=3, frames=4, resolution=32, timesteps=(500,))
    assert result.clips == 3 and 0 <= result.correct <= 3
    assert sum(total for _, total in result.per_label.values()) == 3
    assert len(result.confusions) == 3 - result.correct
    assert 0.02 < result.chance < 0.05  # 28 to 39 candidate motions per family


def test_check_prior_command_writes_json(tmp_path, capsys):
    from animus3d_worker.cli import main

    out = tmp_path / "check.json"
    assert main(["check-prior", "--prior", "tiny", "--clips", "2", "--frames", "4", "--resolution", "32",
                 "--device", "cpu", "--out", str(out)]) == 0
    assert "recognised" in capsys.readouterr().out
    assert json.loads(out.read_text())["clips"] == 2


def test_check_prior_command_refuses_zero_clips(capsys):
    from animus3d_worker.cli import main

    assert main(["check-prior", "--clips", "0"]) == 1
    assert "--clips" in capsys.readouterr().err


def test_held_out_cases_are_classified_among_captions_worded_like_their_prompt(prior):
    from animus3d_lab.heldout import HELDOUT_SUITE, load_split
    from animus3d_lab.prior_check import case_candidates, check_prior_on_cases

    split = load_split()
    cases = [json.loads(line) for line in HELDOUT_SUITE.read_text().splitlines()]
    for case in cases:  # every case's own prompt is its expected motion's candidate
        candidates = dict(case_candidates(case, split))
        assert candidates[case["expected"]] == case["prompt"]
        assert set(candidates) == set(KIND_MOTIONS[case["kind"]])
    result = check_prior_on_cases(prior, cases[:2], split, frames=4, resolution=32, gaussians=200, timesteps=(500,))
    assert result.clips == 2 and len(result.confusions) == 2 - result.correct
    with pytest.raises(ValueError, match="neither one of the split's paraphrases nor a training caption"):
        case_candidates({**cases[0], "prompt": "the mannequin juggles"}, split)


def test_training_suite_cases_are_classified_among_training_captions():
    from animus3d_lab.heldout import TRAIN_SUITE, load_split
    from animus3d_lab.motion_data import all_descriptions
    from animus3d_lab.prior_check import _article, case_candidates

    split = load_split()
    cases = [json.loads(line) for line in TRAIN_SUITE.read_text().splitlines()]
    with_word = 0
    for case in cases:
        candidates = dict(case_candidates(case, split))
        assert set(candidates) == set(KIND_MOTIONS[case["kind"]])
        expected = candidates[case["expected"]]
        assert case["prompt"].startswith(_article(expected))  # its prompt, less a trailing modifier
        with_word += _article(expected) != case["prompt"]
        for label, caption in candidates.items():
            assert caption in all_descriptions(case["kind"], label)  # worded exactly as in training
    assert with_word > 0


def test_check_prior_suite_cases_log_resumes_without_classifying_again(tmp_path, capsys, monkeypatch):
    """--cases-log: each case's guess is appended as it is made; a second run counts the logged cases
    and classifies none again, with the same result."""
    from animus3d_lab import prior_check
    from animus3d_lab.heldout import HELDOUT_SUITE
    from animus3d_worker.cli import main

    suite = tmp_path / "two.jsonl"
    suite.write_text("".join(HELDOUT_SUITE.read_text().splitlines(keepends=True)[:2]))
    log, first, second = tmp_path / "cases.jsonl", tmp_path / "first.json", tmp_path / "second.json"
    args = ["check-prior", "--prior", "tiny", "--suite", str(suite), "--frames", "4", "--resolution", "32",
            "--device", "cpu", "--cases-log", str(log)]
    assert main([*args, "--out", str(first)]) == 0
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["id"] for row in rows] == [json.loads(line)["id"] for line in suite.read_text().splitlines()]

    def no_more(*_a, **_k):
        raise AssertionError("a logged case was classified again")

    monkeypatch.setattr(prior_check, "classify_case", no_more)
    assert main([*args, "--out", str(second)]) == 0
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert a["clips"] == b["clips"] == 2 and a["correct"] == b["correct"] and a["confusions"] == b["confusions"]
    assert len(log.read_text().splitlines()) == 2
