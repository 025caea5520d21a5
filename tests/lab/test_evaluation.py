"""The motion metric: ground-truth parametric motions are recovered; quality metrics behave."""

import json
import math

import numpy as np
import pytest

from animus3d_shared.deformation import Animation
from animus3d_lab import evaluation as ev
from animus3d_lab import motion_data as md


def test_classifier_recovers_ground_truth_motions():
    results = []
    for kind in md.LEGACY_KINDS:
        obj = md.make_object(kind, seed=5, count=800)
        for label in md.LEGACY_KIND_MOTIONS[kind]:
            for amplitude, phase in ((1.0, 0.0), (0.7, math.pi if label in ("sway", "walk", "nod") else -1.0 if label == "tilt" else 0.0)):
                predicted, _ = ev.classify_animation(obj.splat, md.motion_animation(obj, label, 12, amplitude, phase))
                results.append((label, predicted))
    accuracy = np.mean([a == b for a, b in results])
    assert accuracy >= 0.9, [r for r in results if r[0] != r[1]]


def test_similarity_fit_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(200, 3))
    rot = md.axis_angle_matrix((1, 2, 3), 0.7)
    dst = 1.3 * src @ rot.T + np.array([0.1, -2.0, 0.5])
    s, r, t = ev.similarity_fit(src, dst)
    assert abs(s - 1.3) < 1e-9 and np.allclose(r, rot) and np.allclose(t, [0.1, -2.0, 0.5])
    assert np.allclose(np.linalg.norm(ev.rotation_vector(rot)), 0.7)


def test_quality_metrics_distinguish_rigid_from_melting():
    obj = md.make_object("plant", 0, 600)
    rigid = md.motion_animation(obj, "spin", 8)
    m_rigid = ev.evaluate_animation(obj.splat, rigid, "spin", resolution=48)
    assert m_rigid.correct and m_rigid.distortion < 1e-6
    assert m_rigid.appearance_psnr > 35 and m_rigid.frame0_psnr == ev.PSNR_CAP

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.03, rigid.delta_position.shape).astype(np.float32)
    noise[0] = 0
    melted = Animation(rigid.delta_position + noise, rigid.delta_rotation, rigid.delta_scale)
    m_melted = ev.evaluate_animation(obj.splat, melted, "spin", resolution=48)
    assert m_melted.distortion > 100 * max(m_rigid.distortion, 1e-6)
    assert m_melted.smoothness > m_rigid.smoothness
    assert m_melted.appearance_psnr < m_rigid.appearance_psnr


def test_psnr_and_ssim():
    a = np.zeros((16, 16, 3))
    assert ev.psnr(a, a) == ev.PSNR_CAP and abs(ev.ssim(a, a) - 1) < 1e-6
    b = a + 0.1
    assert abs(ev.psnr(a, b) - 20.0) < 1e-6
    assert ev.ssim(a, np.random.default_rng(0).random((16, 16, 3))) < 0.5


def test_ablations_and_suite(tmp_path):
    assert ev.ablation_overrides("random_noise") == {"noise_mode": "random"}
    assert ev.ablation_overrides("text_static") == {"static_prior": "text"}
    assert ev.ablation_overrides("arap=0.5") == {"arap_weight": 0.5}
    with pytest.raises(ev.EvaluationError):
        ev.ablation_overrides("nope")
    cases = ev.load_suite("evals/suite.jsonl")
    assert len(cases) >= 30
    assert all(c.expected in md.KIND_MOTIONS[c.kind] for c in cases)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(ev.EvaluationError, match="bad.jsonl:1"):
        ev.load_suite(bad)


def test_evaluate_command_ground_truth(tmp_path):
    from animus3d_worker.cli import main

    suite = tmp_path / "s.jsonl"
    suite.write_text("\n".join(json.dumps(c) for c in [
        {"id": "a", "kind": "character", "seed": 1, "prompt": "p", "expected": "nod", "count": 800},
        {"id": "b", "kind": "vehicle", "seed": 1, "prompt": "p", "expected": "slide_left", "count": 800}]) + "\n")
    assert main(["evaluate", "--suite", str(suite), "--ground-truth", "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["runs"]["none"]["summary"]["accuracy"] == 1.0


def test_evaluate_command_runs_the_pipeline(tmp_path):
    from animus3d_worker.cli import main

    suite = tmp_path / "s.jsonl"
    suite.write_text(json.dumps({"id": "a", "kind": "plant", "seed": 1, "prompt": "a plant swaying",
                                 "expected": "sway", "count": 500}) + "\n")
    out = tmp_path / "out"
    assert main(["evaluate", "--suite", str(suite), "--preset", "test", "--device", "cpu",
                 "--models", str(_tiny_models(tmp_path)), "--out", str(out)]) == 0
    row = json.loads((out / "results.json").read_text())["runs"]["none"]["cases"][0]
    assert row["predicted"] in md.MOTION_LABELS and np.isfinite(row["appearance_psnr"])


def test_an_msd_ablation_of_a_preset_without_msd_is_refused_with_the_preset_to_use(tmp_path, capsys):
    from animus3d_worker.cli import main

    suite = tmp_path / "s.jsonl"
    suite.write_text(json.dumps({"id": "a", "kind": "plant", "seed": 1, "prompt": "a plant swaying",
                                 "expected": "sway", "count": 500}) + "\n")
    assert main(["evaluate", "--suite", str(suite), "--ablation", "random_noise", "--preset", "standard",
                 "--models", str(_tiny_models(tmp_path)), "--out", str(tmp_path / "out")]) != 0
    assert "msd" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.json").exists()


def _tiny_models(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"motion_prior": "tiny"}))
    return path


def test_the_classifier_needs_no_part_labels():
    results = []
    for kind in md.LEGACY_KINDS:
        obj = md.make_object(kind, seed=6, count=800)
        for label in md.LEGACY_KIND_MOTIONS[kind]:
            animation = md.motion_animation(obj, label, 12, 1.0, 0.0)
            results.append((label, ev.classify_animation(obj.splat, animation, part_labels=False)[0]))
    accuracy = np.mean([a == b for a, b in results])
    assert accuracy >= 0.9, [r for r in results if r[0] != r[1]]
    assert ("wave_right", "wave_right") in results and ("nod", "nod") in results


def test_hand_cycles_count_a_wave_of_that_hand_only():
    obj = md.make_object("character", seed=5, count=1500)
    wave = md.motion_animation(obj, "wave_right", 16, 1.0, 0.0)
    assert ev.hand_cycles(obj.splat, wave, "right") >= 2
    assert ev.hand_cycles(obj.splat, wave, "left") == 0
    assert ev.hand_cycles(obj.splat, md.motion_animation(obj, "jump", 16, 1.0, 0.0), "right") == 0
    assert ev.up_down_cycles(np.array([0.0, 1.0, 0.0, 1.0, 0.0]), 0.5) == 2
    assert ev.up_down_cycles(np.array([0.0, 1.0, 1.0, 1.0]), 0.5) == 0
