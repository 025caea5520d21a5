"""The whole pipeline on the CPU with the tiny prior and the `test` preset (the real code path)."""

import numpy as np
import pytest
import torch

from animus3d_shared.settings import JobSettings
from animus3d_worker.events import JobCancelled, JobEvents
from animus3d_worker.models import ModelConfig
from animus3d_worker.pipeline import PriorCache, derive_static_prompt, run_job

TINY = ModelConfig(motion_prior="tiny")


@pytest.fixture(scope="module")
def blob():
    from animus3d_shared.samples import make_test_blob

    return make_test_blob(seed=3, count=1500)


@pytest.fixture(scope="module")
def priors():
    return PriorCache()


def run(blob, priors, tmp_path, **overrides):
    settings = JobSettings.from_preset("test", **overrides)
    previews = []
    progress = []
    events = JobEvents(on_progress=progress.append,
                       on_preview=lambda a, s, step, idx: previews.append((a, s, step, idx)))
    result = run_job(blob, "the blob jumps", settings, seed=7, device="cpu", models=TINY, events=events,
                     priors=priors, lora_cache_dir=tmp_path / "lora")
    return result, previews, progress


def test_first_frame_is_the_input_and_later_frames_move(blob, priors, tmp_path):
    result, previews, progress = run(blob, priors, tmp_path, refine_steps=0, msd_lr=5e-2)
    anim = result.animation
    assert anim.num_gaussians == blob.count
    assert anim.num_frames == 4
    np.testing.assert_array_equal(anim.delta_position[0], 0.0)
    np.testing.assert_array_equal(anim.delta_scale[0], 0.0)
    np.testing.assert_array_equal(anim.delta_rotation[0], np.tile([1, 0, 0, 0], (blob.count, 1)).astype(np.float32))
    assert np.abs(anim.delta_position[-1]).max() > 1e-6, "later frames should move"
    stages = [p.stage for p in progress]
    for stage in ("load", "static_prior", "msd", "export"):
        assert stage in stages
    assert previews and previews[-1][0].num_gaussians == blob.count


def test_previews_of_large_splats_are_subsampled_with_their_indices(blob, priors, tmp_path):
    _, previews, _ = run(blob, priors, tmp_path, refine_steps=0, preview_max_gaussians=500, preview_every=3)
    assert [p[2] for p in previews] == [1, 3, 6]  # first step, every 3rd, last
    for anim, stage, step, indices in previews:
        assert anim.num_gaussians == 500 and indices.dtype == np.int32
        assert len(np.unique(indices)) == 500 and indices.min() >= 0 and indices.max() < blob.count


def test_refinement_raises_the_frame_count(blob, priors, tmp_path):
    result, _, _ = run(blob, priors, tmp_path, refine_steps=2, refine_frame_multiplier=3)
    assert result.animation.num_frames == 12
    np.testing.assert_array_equal(result.animation.delta_position[0], 0.0)
    assert "refine" in result.timings


def test_guide_stage_runs_before_msd_and_reports_its_fit(blob, priors, tmp_path):
    result, previews, progress = run(blob, priors, tmp_path, refine_steps=0, msd_steps=2, guide_steps=5,
                                     guide_denoise_steps=2, global_motion=True)
    stages = [p.stage for p in progress]
    assert "guide" in stages and stages.index("guide") < stages.index("msd")
    assert {"guide", "arap", "tv"} <= set(result.loss_history)
    assert len(result.loss_history["guide"]) == 5 and "guide" in result.timings
    # the guide's own regulariser history is kept beside MSD's, not overwritten by it
    assert len(result.loss_history["guide_arap"]) == 5 and len(result.loss_history["arap"]) == 2
    assert any(stage == "guide" for _, stage, _, _ in previews)
    np.testing.assert_array_equal(result.animation.delta_position[0], 0.0)


def test_a_guide_without_msd_fits_no_lora_and_says_which_draw_it_kept(blob, priors, tmp_path):
    result, _, progress = run(blob, priors, tmp_path, refine_steps=0, msd_steps=0, guide_steps=3,
                              guide_denoise_steps=2, guide_draws=2)
    assert "lora" not in result.loss_history and "static_prior_cache_hit" not in result.timings
    assert len(result.loss_history["guide"]) == 3
    assert any("kept guide draw" in (p.message or "") for p in progress if p.stage == "guide")
    assert float(np.abs(result.animation.delta_position[1:]).max()) > 0.0  # the fit moved the field


def test_same_seed_same_result(blob, priors, tmp_path):
    a, _, _ = run(blob, priors, tmp_path, refine_steps=0)
    b, _, _ = run(blob, priors, tmp_path, refine_steps=0)
    np.testing.assert_array_equal(a.animation.delta_position, b.animation.delta_position)
    np.testing.assert_array_equal(a.animation.delta_rotation, b.animation.delta_rotation)


def test_lora_cache_hit_skips_training(blob, priors, tmp_path):
    first, _, _ = run(blob, priors, tmp_path, refine_steps=0, msd_steps=1, lora_steps=3)
    assert first.timings["static_prior_cache_hit"] == 0.0 and len(first.loss_history["lora"]) == 3
    second, _, _ = run(blob, priors, tmp_path, refine_steps=0, msd_steps=1, lora_steps=3)
    assert second.timings["static_prior_cache_hit"] == 1.0 and "lora" not in second.loss_history


def test_ablation_switches_run(blob, priors, tmp_path):
    result, _, _ = run(blob, priors, tmp_path, refine_steps=0, noise_mode="random", static_prior="text")
    assert result.animation.num_frames == 4
    sds, _, progress = run(blob, priors, tmp_path, refine_steps=0, score_mode="sds")
    assert "lora" not in sds.loss_history  # plain SDS has no static prior to fit
    assert not any(p.stage == "static_prior" and p.step for p in progress)


def test_cancel_stops_the_job(blob, priors, tmp_path):
    events = JobEvents()
    events.cancel_event.set()
    with pytest.raises(JobCancelled):
        run_job(blob, "the blob jumps", JobSettings.from_preset("test"), device="cpu", models=TINY, events=events,
                priors=priors, lora_cache_dir=tmp_path)


def test_static_prompt_is_derived_from_the_motion_prompt():
    assert derive_static_prompt("the robot waves its right arm") == "the robot, standing still, static"
    assert "static" in derive_static_prompt("a dancing flame")


def test_a_job_with_the_turn_search_runs_and_reports_time_left(blob, priors, tmp_path):
    result, _, progress = run(blob, priors, tmp_path, refine_steps=2, msd_steps=0, guide_steps=6,
                              guide_denoise_steps=2, global_motion=True, guide_yaw_search=True)
    assert result.animation.delta_position.shape[0] == 8  # 4 frames, refined at twice the rate
    etas = [p.eta_s for p in progress if p.stage in ("guide", "refine") and p.step > 0]
    assert etas and all(e is not None and e >= 0.0 for e in etas)
    assert etas[-1] < max(etas)  # it counts down


def test_the_static_prior_lora_never_touches_the_cached_prior(blob, tmp_path):
    """MSD with a LoRA static prior: the LoRA lives on a job-local copy of the UNet; the cached prior's
    UNet keeps its modules and weights, and a second job on it gets the same result."""
    from animus3d_worker.priors import lora

    priors = PriorCache()
    prior = priors.get(TINY.motion_prior, "cpu", torch.float32)
    modules = [id(m) for m in prior.unet.modules()]
    weights = {k: v.clone() for k, v in prior.unet.state_dict().items()}
    during = []  # (stage, whether the cached prior had LoRA layers) at every progress report
    settings = JobSettings.from_preset("test")
    events = JobEvents(on_progress=lambda p: during.append((p.stage, lora.has_lora(prior.unet))))
    first = run_job(blob, "the blob jumps", settings, seed=7, device="cpu", models=TINY, events=events,
                    priors=priors, lora_cache_dir=tmp_path / "lora")
    assert {"static_prior", "msd"} <= {stage for stage, _ in during}
    assert not any(has for _, has in during)
    assert priors.get(TINY.motion_prior, "cpu", torch.float32) is prior
    assert not lora.has_lora(prior.unet)
    assert [id(m) for m in prior.unet.modules()] == modules
    state = prior.unet.state_dict()
    assert state.keys() == weights.keys() and all(torch.equal(state[k], w) for k, w in weights.items())
    second = run_job(blob, "the blob jumps", settings, seed=7, device="cpu", models=TINY, priors=priors,
                     lora_cache_dir=tmp_path / "lora")  # the LoRA now comes from the disk cache
    np.testing.assert_allclose(second.animation.delta_position, first.animation.delta_position, atol=1e-5)


def test_a_fit_on_fewer_gaussians_still_moves_every_gaussian(blob, priors, tmp_path):
    result, previews, _ = run(blob, priors, tmp_path, refine_steps=2, msd_lr=5e-2, fit_gaussians_per_pixel=0.3)
    anim = result.animation
    assert anim.num_gaussians == blob.count and previews[-1][0].num_gaussians == blob.count
    moved = np.linalg.norm(anim.delta_position[-1], axis=-1)
    assert result.settings["resolution"] == 32  # 0.3 per pixel: 307 of the 1500 Gaussians
    # 307 of 1500 were rendered in the fits; the field moves the others too (it is a function of
    # position), and about as much as the fitted ones.
    assert (moved > 1e-6).mean() > 0.95


def test_the_artist_presets_fit_on_one_gaussian_per_pixel():
    from animus3d_shared.samples import make_test_blob
    from animus3d_worker.render import make_cameras
    from animus3d_worker.splat_tensors import SplatTensors
    from animus3d_worker.stages.core import MotionProblem

    tensors = SplatTensors.from_splat(make_test_blob(seed=1, count=5000), "cpu")
    cameras = make_cameras(*tensors.bbox, resolution=64, orbit_views=0, device="cpu")
    for preset, fitted, more in (("standard", 4096, {}), ("draft", 4096, {}), ("msd", 5000, {}),
                                 ("standard", 64, {"fit_gaussians_per_pixel": 1e-6})):
        problem = MotionProblem.build(tensors, cameras, JobSettings.from_preset(preset, resolution=64, **more))
        assert problem.splat.count == fitted and problem.rest_means.shape[0] == 5000, preset
