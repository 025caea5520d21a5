"""Stage 2a: the guide clip drawn by the prior and the fit of the motion field to it (CPU, tiny prior)."""

from __future__ import annotations

import pytest
import torch

from animus3d_shared.samples import make_test_blob
from animus3d_shared.settings import JobSettings
from animus3d_worker.events import JobEvents
from animus3d_worker.pipeline import encode_conditioning
from animus3d_worker.priors import load_prior
from animus3d_worker.priors.scoring import prompt_preference
from animus3d_worker.stages.guide import (FRONT_VIEW, SIDE_MARGIN, compared_frames, draw_guide_clips, fit_to_guide,
                                          fitted_window, guide_motion, heading_travel, mirror_reason, mirrored_motion,
                                          side_balance)
from animus3d_worker.stages.core import MotionProblem
from helpers_problem import motion_problem


@pytest.fixture(scope="module")
def blob():
    return make_test_blob(seed=3, count=800)


def _problem(blob, **overrides) -> tuple[MotionProblem, JobSettings]:
    return motion_problem(blob, orbit_views=2, **overrides)


def test_the_window_starts_at_two_frames_and_reaches_all_of_them():
    windows = [fitted_window(step, 100, 16) for step in range(100)]
    assert windows[0] == 2 and windows[-1] == 16
    assert all(a <= b for a, b in zip(windows, windows[1:]))
    assert windows.index(16) <= 60


def test_a_fit_step_compares_the_window_or_a_seeded_draw_of_its_frames():
    assert compared_frames(5, 0, torch.Generator().manual_seed(0)) == slice(0, 5)
    assert compared_frames(5, 8, torch.Generator().manual_seed(0)) == slice(0, 5)
    draws = [compared_frames(16, 6, torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])  # deterministic for a seed
    assert len(draws[0]) == 6 and len(set(draws[0].tolist())) == 6 and int(draws[0].max()) < 16
    assert torch.equal(draws[0], draws[0].sort().values)
    g = torch.Generator().manual_seed(2)
    seen = set()
    for _ in range(40):
        seen |= set(compared_frames(16, 6, g).tolist())
    assert seen == set(range(16))  # every frame of the window gets compared


def test_fitting_on_drawn_frames_still_moves_towards_the_guide(blob):
    problem, settings = _problem(blob, guide_steps=40, guide_fit_frames=2, global_motion=True, arap_weight=1.0,
                                 tv_weight=0.1)
    with torch.no_grad():
        problem.field.global_motion.translation[:, 0] = torch.linspace(0.0, 0.15, problem.field.global_motion.translation.shape[0])
        _, (means, quats, log_scales) = problem.deform(problem.frames)
        guide = problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))[0]
        problem.field.global_motion.translation.zero_()
    before = float(((field_clip(problem) - guide) ** 2).mean())
    fit_to_guide(problem, guide, settings, JobEvents())
    assert float(((field_clip(problem) - guide) ** 2).mean()) < 0.7 * before


def field_clip(problem):
    with torch.no_grad():
        _, (means, quats, log_scales) = problem.deform(problem.frames)
        return problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))[0]


def test_rendering_only_the_compared_frames_gives_the_whole_clips_loss_and_gradients(blob):
    """The fit renders the window's frames alone; the loss and every field gradient equal those of
    rendering the whole clip and comparing its window."""
    from animus3d_worker.stages.pixel_fit import pixel_fit_loss

    problem, _ = _problem(blob, global_motion=True)
    with torch.no_grad():
        for p in problem.field.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        _, (means, quats, log_scales) = problem.deform(problem.frames)
        guide = problem.render_clips(means.flip(0), quats, log_scales.flip(0), (FRONT_VIEW,))[0]
    window = 5
    results = []
    for rendered in ("window", "whole"):
        problem.field.zero_grad(set_to_none=True)
        _, (means, quats, log_scales) = problem.deform(problem.frames)
        if rendered == "window":
            clip = problem.render_clips(means[:window], quats[:window], log_scales[:window], (FRONT_VIEW,))[0]
        else:
            clip = problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))[0][:window]
        loss = pixel_fit_loss(clip, guide[:window], colour_match=True)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in problem.field.parameters() if p.grad is not None]))
    (a, grads_a), (b, grads_b) = results
    assert float(a) > 0 and torch.allclose(a, b, rtol=1e-5)
    assert len(grads_a) == len(grads_b) > 0
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-7)


def test_the_guide_is_a_clip_of_the_front_view_drawn_deterministically(blob):
    problem, settings = _problem(blob, guide_denoise_steps=2, guide_noise="inverted")
    prior = load_prior("tiny", device="cpu")
    cond = encode_conditioning(prior, "the blob jumps", "the blob, standing still")
    first = draw_guide_clips(prior, problem, cond, settings).kept_clip
    second = draw_guide_clips(prior, problem, cond, settings).kept_clip
    assert first.shape == (settings.frames, 3, settings.resolution, settings.resolution)
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert torch.equal(first, second)
    # the field is left as it was: drawing a guide does not train anything
    assert all(p.detach().abs().sum().item() == 0.0 for n, p in problem.field.named_parameters() if "head" in n)


def test_fitting_moves_the_front_view_towards_the_guide(blob):
    """A guide made by the field itself (a known sideways motion): the fit must shrink the pixel error."""
    problem, settings = _problem(blob, guide_steps=60, global_motion=True, arap_weight=1.0, tv_weight=0.1)
    with torch.no_grad():
        problem.field.global_motion.translation[:, 0] = torch.linspace(0.0, 0.15, problem.field.global_motion.translation.shape[0])
        _, (means, quats, log_scales) = problem.deform(problem.frames)
        guide = problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))[0]
        problem.field.global_motion.translation.zero_()
        _, (means, quats, log_scales) = problem.deform(problem.frames)
        before = float(((problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))[0] - guide) ** 2).mean())
    losses = fit_to_guide(problem, guide, settings, JobEvents()).losses
    with torch.no_grad():
        _, (means, quats, log_scales) = problem.deform(problem.frames)
        after = float(((problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))[0] - guide) ** 2).mean())
    assert after < 0.3 * before
    assert len(losses["guide"]) == 60
    shift = problem.field.global_motion.translation[-1, 0] - problem.field.global_motion.translation[0, 0]
    assert float(shift) > 0.05  # it went the guide's way


def test_guide_settings_are_validated():
    with pytest.raises(ValueError):
        JobSettings.from_preset("standard", guide_strength=1.0)
    with pytest.raises(ValueError):
        JobSettings.from_preset("standard", guide_steps=-1)
    assert JobSettings.from_preset("paper").guide_steps == 0  # the paper's method has no guide
    defaults = JobSettings.from_preset("standard")  # what switching the stage on gives: the measured best
    assert (defaults.guide_noise, defaults.guide_guidance_scale) == ("anchored", 30.0)
    with pytest.raises(ValueError, match="guide_noise"):
        JobSettings.from_preset("standard", guide_noise="random")
    with pytest.raises(ValueError, match="guide_draws"):  # inversion is deterministic: one clip only
        JobSettings.from_preset("standard", guide_noise="inverted", guide_draws=4)
    with pytest.raises(ValueError, match="guide_draws"):
        JobSettings.from_preset("standard", guide_draws=0)


def test_an_anchored_guide_starts_at_the_still_render_and_depends_on_the_job_seed(blob):
    problem, settings = _problem(blob, guide_denoise_steps=2, guide_noise="anchored")
    prior = load_prior("tiny", device="cpu")
    cond = encode_conditioning(prior, "the blob jumps", "the blob, standing still")
    draw = lambda seed: draw_guide_clips(prior, problem, cond, settings, torch.Generator().manual_seed(seed)).kept_clip  # noqa: E731
    first, again, other = draw(1), draw(1), draw(2)
    with torch.no_grad():
        _, (means, quats, log_scales) = problem.deform(problem.frames)
        still = problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))
        rest = prior.decode_latents(prior.encode_frames(still.to(prior.dtype))).float()[0, 0]
    torch.testing.assert_close(first[0], rest)  # frame 0 is the object at rest, whatever the noise
    torch.testing.assert_close(other[0], rest)
    assert torch.equal(first, again)
    assert not torch.allclose(first[1:], other[1:])  # the rest of the clip is drawn from the seed's noise


def test_of_several_draws_the_prior_keeps_the_one_its_motion_prompt_prefers(blob):
    problem, settings = _problem(blob, guide_denoise_steps=2, guide_draws=3)
    prior = load_prior("tiny", device="cpu")
    cond = encode_conditioning(prior, "the blob jumps", "the blob, standing still")
    draws = draw_guide_clips(prior, problem, cond, settings, torch.Generator().manual_seed(5))
    single = draw_guide_clips(prior, problem, cond, settings.replace(guide_draws=1), torch.Generator().manual_seed(5))
    assert draws.clips.shape == (3, settings.frames, 3, settings.resolution, settings.resolution)
    assert single.preferences == [] and single.kept == 0
    # the first of several draws is the single draw of the same seed: more draws only add candidates
    torch.testing.assert_close(draws.clips[0], single.kept_clip, atol=1e-5, rtol=0)
    assert not torch.allclose(draws.clips[1, 1:], draws.clips[2, 1:])
    assert len(draws.preferences) == 3 and draws.kept == min(range(3), key=draws.preferences.__getitem__)
    # the preference is the prior's own: recomputed from the kept clip's latents it is the same number
    latents = prior.encode_frames(draws.clips[draws.kept][None])
    again = float(prompt_preference(prior, latents, cond.motion, cond.static)[0])
    assert again == pytest.approx(draws.preferences[draws.kept], abs=2e-3)


def test_a_prompt_does_not_prefer_itself_and_clips_are_compared_under_the_same_noise():
    prior = load_prior("tiny", device="cpu")
    cond = encode_conditioning(prior, "the blob jumps", "the blob, standing still")
    clips = torch.rand(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    latents = prior.encode_frames(torch.cat([clips[:1], clips[:1], clips[1:]]))
    same = prompt_preference(prior, latents, cond.motion, cond.motion)
    assert torch.equal(same, torch.zeros(3))  # one caption against itself: no preference at all
    scores = prompt_preference(prior, latents, cond.motion, cond.static)
    assert float(scores[0]) == pytest.approx(float(scores[1]), abs=1e-6)  # the same clip twice: the same noise
    assert float(scores[0]) != pytest.approx(float(scores[2]), abs=1e-6)


def _clip_moving(still: torch.Tensor, columns: slice, frames: int = 4) -> torch.Tensor:
    clip = still.expand(frames, -1, -1, -1).clone()
    clip[1:, :, 4:12, columns] = 1.0 - clip[1:, :, 4:12, columns]
    return clip


def test_the_side_balance_tells_which_side_of_the_object_moves_as_it_faces_the_camera():
    still = torch.zeros(3, 16, 16)
    still[:, 2:14, 2:10] = 0.8  # an object left of the image centre: its centre column is 5.5
    image_left, image_right = _clip_moving(still, slice(2, 5)), _clip_moving(still, slice(7, 10))
    clips = torch.stack([image_left, image_right, still.expand(4, -1, -1, -1)])
    right, left = side_balance(clips, still, "right"), side_balance(clips, still, "left")
    # the object's own right is the image's left: the camera looks at its front
    assert right[0] > 0.9 and right[1] < -0.9 and abs(float(right[2])) < 1e-6
    torch.testing.assert_close(left, -right)


def test_a_named_side_draws_until_a_clip_moves_it_and_never_more_than_the_setting(blob):
    problem, settings = _problem(blob, guide_denoise_steps=2, guide_draws=1, guide_side_draws=5)
    prior = load_prior("tiny", device="cpu")
    cond = encode_conditioning(prior, "the blob waves its left arm", "the blob, standing still")
    plain = draw_guide_clips(prior, problem, cond, settings, torch.Generator().manual_seed(5))
    assert plain.clips.shape[0] == 1 and plain.side_balances == []  # no side named: one round, as before
    off = draw_guide_clips(prior, problem, cond, settings.replace(guide_side_draws=1), torch.Generator().manual_seed(5),
                           side="left")
    assert off.side_balances == [] and torch.equal(off.kept_clip, plain.kept_clip)  # the setting's 1: a side changes nothing
    for side in ("left", "right"):
        draws = draw_guide_clips(prior, problem, cond, settings, torch.Generator().manual_seed(5), side=side)
        n = draws.clips.shape[0]
        assert 1 <= n <= 5 and len(draws.side_balances) == n
        torch.testing.assert_close(draws.clips[0], plain.kept_clip)  # the first round is the plain draw
        found = [i for i, b in enumerate(draws.side_balances) if b > SIDE_MARGIN]
        if found:  # it stopped at the first clip that moves the side, and kept it
            assert found == [n - 1] and draws.kept == n - 1 and draws.side_found
        else:  # five draws, none moved it: the closest is kept
            assert n == 5 and draws.side_balances[draws.kept] == max(draws.side_balances)
        with torch.no_grad():
            still = problem.render_clips(*problem.deform(problem.frames)[1], (FRONT_VIEW,))[0, 0]
        again = side_balance(draws.clips, still.float(), side)
        assert [round(float(b), 4) for b in again] == [round(b, 4) for b in draws.side_balances]


def _sliding(still: torch.Tensor, step: int, frames: int = 6) -> torch.Tensor:
    """``still`` shifted ``step`` more columns each frame (the background fills in behind)."""
    clip = still.expand(frames, -1, -1, -1).clone()
    for t in range(1, frames):
        clip[t] = still[:, :1, :1].expand_as(still).clone()
        shift = step * t
        if shift >= 0:
            clip[t, :, :, shift:] = still[:, :, :still.shape[-1] - shift]
        else:
            clip[t, :, :, :shift] = still[:, :, -shift:]
    return clip


def test_the_heading_travel_is_the_object_s_sideways_travel_as_a_share_of_its_width():
    still = torch.full((3, 16, 32), 0.2)
    still[:, 3:13, 11:19] = 0.9  # an object 8 columns wide
    clips = torch.stack([_sliding(still, 1), _sliding(still, -1), still.expand(6, -1, -1, -1)])
    travel = heading_travel(clips, still)
    # frames 3..5 sit 3, 4, 5 columns over: 4 columns on average, half the object's width
    torch.testing.assert_close(travel, torch.tensor([0.5, -0.5, 0.0]))
    assert mirror_reason(clips[0], still, None, "left").startswith("it travels right, not left")
    assert mirror_reason(clips[0], still, None, "right") is None
    assert mirror_reason(clips[1], still, None, "right") is not None
    assert mirror_reason(clips[2], still, None, "right") is None  # no travel: nothing to correct
    assert mirror_reason(clips[0].flip(-1), still.flip(-1), None, "left") is None  # mirrored, it heads left


def test_the_heading_travel_ignores_empty_frames_and_an_empty_still():
    still = torch.full((3, 16, 32), 0.2)
    still[:, 3:13, 11:19] = 0.9
    clip = _sliding(still, -1)
    clip[4:] = 0.2  # the object is gone from the last frames: they say nothing of where it went
    torch.testing.assert_close(heading_travel(clip.unsqueeze(0), still), torch.tensor([-3 / 8]))
    empty = torch.full((3, 16, 32), 0.2)
    assert float(heading_travel(_sliding(still, 1).unsqueeze(0), empty)[0]) == 0.0
    assert mirror_reason(_sliding(still, 1), empty, None, "left") is None


def test_a_mirrored_motion_keeps_the_first_frame_and_what_does_not_move():
    still = torch.full((3, 16, 16), 0.1)
    still[:, 2:14, 5:11] = 0.8  # a body in the middle
    still[:, 2:5, 11:14] = 0.5  # and a lopsided part on the image right that never moves
    clip = _clip_moving(still, slice(5, 7))  # the body's image-left columns change
    mirrored = mirrored_motion(clip)
    torch.testing.assert_close(mirrored[0], still)
    torch.testing.assert_close(mirrored[:, :, 2:5, 11:14], clip[:, :, 2:5, 11:14])  # the lopsided part stays
    torch.testing.assert_close(mirrored[1:, :, 4:12, 9:11], clip[1:, :, 4:12, 5:7].flip(-1))  # the change moves over
    assert torch.equal(mirrored[1:, :, 4:12, 5:7], still[:, 4:12, 5:7].expand(3, -1, -1, -1))


def test_a_clip_that_moves_the_other_side_is_to_be_mirrored():
    still = torch.zeros(3, 16, 16)
    still[:, 2:14, 3:13] = 0.8
    image_left = _clip_moving(still, slice(3, 6))  # the object's own right
    assert mirror_reason(image_left, still, "right", None) is None
    assert mirror_reason(image_left, still, "left", None).startswith("it moves the object's right side, not its left")
    assert mirror_reason(image_left.flip(-1), still, "left", None) is None


def test_guide_mirror_fits_the_mirrored_clip_only_when_the_kept_draw_heads_the_other_way(blob, monkeypatch):
    from animus3d_worker.stages import guide as guide_stage

    problem, settings = _problem(blob, guide_denoise_steps=2, guide_steps=2, guide_mirror=True)
    prior = load_prior("tiny", device="cpu")
    cond = encode_conditioning(prior, "the blob slides to the left", "the blob, standing still")
    still = guide_stage.field_front_clip(problem)[0]
    right = _sliding(still, 1, problem.frames)
    fitted: list[torch.Tensor] = []
    monkeypatch.setattr(guide_stage, "draw_guide_clips",
                        lambda *a, **k: guide_stage.GuideDraws(right.unsqueeze(0), [], 0, still=still))
    monkeypatch.setattr(guide_stage, "fit_to_guide",
                        lambda problem, guide, *a, **k: (fitted.append(guide), guide_stage.GuideFit({}))[1])
    messages: list[str] = []
    events = JobEvents(on_progress=lambda p: messages.append(p.message))
    left = guide_motion(prior, problem, cond, settings, events, heading="left")
    assert left.mirrored and torch.equal(fitted[-1], mirrored_motion(right))
    assert any(m.startswith("mirrored the guide clip: it travels right, not left") for m in messages)
    assert not guide_motion(prior, problem, cond, settings, events, heading="right").mirrored
    assert torch.equal(fitted[-1], right)
    off = guide_motion(prior, problem, cond, settings.replace(guide_mirror=False), events, heading="left")
    assert not off.mirrored and torch.equal(fitted[-1], right)
