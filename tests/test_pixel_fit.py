"""The pixel loss of the guide and refinement fits: colour-matched, it sees where things are, not their colour."""

from __future__ import annotations

import pytest
import torch

from animus3d_shared.samples import make_test_blob
from animus3d_worker.events import JobEvents
from animus3d_worker.stages.guide import FRONT_VIEW, fit_to_guide
from animus3d_worker.stages.pixel_fit import apply_colour_maps, fit_colour_maps, pixel_fit_loss
from helpers_problem import motion_problem


def _recolour(clip: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each frame [3, H, W] through its own random invertible affine colour map (kept inside [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    frames = []
    for frame in clip:
        matrix = 0.6 * torch.eye(3) + 0.15 * torch.rand(3, 3, generator=g)
        offset = 0.1 * torch.rand(3, generator=g)
        frames.append(torch.einsum("ij,jhw->ihw", matrix, frame) + offset[:, None, None])
    return torch.stack(frames)


@pytest.fixture(scope="module")
def still_clip():
    problem, _ = motion_problem(make_test_blob(seed=5, count=600), orbit_views=1)
    with torch.no_grad():
        _, (means, quats, log_scales) = problem.deform(problem.frames)
        return problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))[0]


def test_a_recoloured_clip_is_mapped_back_to_its_colours(still_clip):
    recoloured = _recolour(still_clip)
    before = float((recoloured - still_clip).abs().mean())
    assert before > 0.05
    mapped = apply_colour_maps(fit_colour_maps(recoloured, still_clip), recoloured)
    assert mapped.shape == still_clip.shape
    assert float((mapped - still_clip).abs().mean()) < 0.05 * before  # the ridge towards identity costs a little


def test_the_colour_matched_loss_ignores_recolouring_but_not_displacement(still_clip):
    recoloured = _recolour(still_clip, seed=1)
    shifted = torch.roll(still_clip, shifts=3, dims=-1)
    plain = pixel_fit_loss(still_clip, recoloured, colour_match=False)
    matched = pixel_fit_loss(still_clip, recoloured, colour_match=True)
    assert float(matched) < 0.01 * float(plain)
    moved = pixel_fit_loss(still_clip, shifted, colour_match=True)
    assert float(moved) > 10 * float(matched)


def test_erasing_the_object_does_not_fit_a_recoloured_target(still_clip):
    """A blank render has no colour map onto a target with the object in it (the other way round, a map
    of the target onto a blank render, would whiten the target and make erasing the object free)."""
    recoloured = _recolour(still_clip, seed=3)
    blank = torch.ones_like(still_clip)
    assert float(pixel_fit_loss(blank, recoloured, colour_match=True)) > 20 * float(
        pixel_fit_loss(still_clip, recoloured, colour_match=True))


def test_the_gradient_is_the_one_with_the_colour_map_held(still_clip):
    """At the best map the loss's gradient in the render equals the plain MSE's gradient of the mapped
    render with the map as a constant (no second-order path through the least-squares solve)."""
    rendered = still_clip.clone().requires_grad_(True)
    target = _recolour(torch.roll(still_clip, shifts=2, dims=-1))
    pixel_fit_loss(rendered, target, colour_match=True).backward()
    maps = fit_colour_maps(still_clip, target)
    held = still_clip.clone().requires_grad_(True)
    (100.0 * torch.nn.functional.mse_loss(apply_colour_maps(maps, held), target)).backward()
    assert float(rendered.grad.abs().sum()) > 0
    assert torch.allclose(rendered.grad, held.grad)


def test_mismatched_clips_are_refused(still_clip):
    with pytest.raises(ValueError, match="colour match"):
        fit_colour_maps(still_clip[:, :2], still_clip[:, :2])
    with pytest.raises(ValueError, match="colour match"):
        fit_colour_maps(still_clip, still_clip[:-1])


def test_the_guide_fit_follows_a_recoloured_guide_the_right_way():
    """The field's own sideways motion, rendered and recoloured frame by frame: the colour-matched fit
    still moves the object that way."""
    problem, settings = motion_problem(make_test_blob(seed=3, count=800), orbit_views=2, guide_steps=60,
                                       global_motion=True, arap_weight=1.0, tv_weight=0.1, fit_colour_match=True)
    translation = problem.field.global_motion.translation
    with torch.no_grad():
        translation[:, 0] = torch.linspace(0.0, 0.15, translation.shape[0])
        _, (means, quats, log_scales) = problem.deform(problem.frames)
        guide = _recolour(problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))[0], seed=2)
        translation.zero_()
    fit_to_guide(problem, guide, settings, JobEvents())
    assert float(translation[-1, 0] - translation[0, 0]) > 0.05


def test_coarse_levels_pull_a_part_that_does_not_overlap_its_target():
    def clip_with_square(x: int) -> torch.Tensor:
        clip = torch.zeros(1, 3, 16, 16)
        clip[..., 6:10, x:x + 3] = 1.0
        return clip

    target = clip_with_square(12)
    far, nearer = clip_with_square(1), clip_with_square(6)
    # at full size any square that misses the target costs the same: no pull towards it
    assert float(pixel_fit_loss(far, target, colour_match=False)) == pytest.approx(
        float(pixel_fit_loss(nearer, target, colour_match=False)))
    coarse = [float(pixel_fit_loss(c, target, colour_match=False, coarse_levels=3)) for c in (far, nearer, target)]
    assert coarse[0] > coarse[1] > coarse[2] == 0.0
    assert float(pixel_fit_loss(far, target, False, coarse_levels=99)) > 0  # more levels than sizes: capped
