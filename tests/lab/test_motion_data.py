"""Synthetic motion data: deterministic objects, labelled motions, Animation deltas, rendered clips."""

import numpy as np
import pytest
import torch

from animus3d_lab import motion_data as md


def test_objects_are_deterministic_and_labelled():
    for kind in md.KINDS:
        a, b = md.make_object(kind, seed=3, count=600), md.make_object(kind, seed=3, count=600)
        assert np.array_equal(a.splat.means, b.splat.means)
        assert a.splat.count == 600
        assert set(a.pivots) == set(a.part_names)
        assert a.height > 0.2
    assert not np.array_equal(md.make_object("animal", 1, 600).splat.means, md.make_object("animal", 2, 600).splat.means)
    with pytest.raises(md.MotionDataError):
        md.make_object("spaceship")


def test_every_motion_starts_at_rest_and_moves():
    for kind in md.KINDS:
        obj = md.make_object(kind, 0, 600)
        for label in md.KIND_MOTIONS[kind]:
            anim = md.motion_animation(obj, label, frames=8)
            assert anim.num_frames == 8 and anim.num_gaussians == 600
            assert np.abs(anim.delta_position[0]).max() < 1e-5
            moved = np.abs(anim.delta_position).max() + np.abs(anim.delta_scale).max()
            assert (moved < 1e-6) == (label == "still"), (kind, label)


def test_part_motions_move_only_their_part():
    obj = md.make_object("character", 0, 1200)
    anim = md.motion_animation(obj, "wave_right", frames=8)
    moved = np.linalg.norm(anim.delta_position, axis=-1).max(0) > 1e-6
    assert np.array_equal(moved, obj.part_mask("right_arm"))
    # deltas are rigid per part: pairwise distances inside the arm are kept
    arm = np.asarray(obj.splat.means)[obj.part_mask("right_arm")][:50]
    moved_arm = arm + anim.delta_position[5][obj.part_mask("right_arm")][:50]
    d0 = np.linalg.norm(arm[:, None] - arm[None], axis=-1)
    d1 = np.linalg.norm(moved_arm[:, None] - moved_arm[None], axis=-1)
    assert np.allclose(d0, d1, atol=1e-4)


def test_delta_rotation_matches_the_position_change():
    obj = md.make_object("vehicle", 0, 400)
    anim = md.motion_animation(obj, "spin", frames=5)
    q = anim.delta_rotation[2, 0]  # quarter of a turn... at frame 2 of 5: half a turn about z
    assert abs(abs(q[0]) - np.cos(np.pi / 2)) < 1e-5 and abs(abs(q[3]) - np.sin(np.pi / 2)) < 1e-5


def test_impossible_or_unknown_motions_are_refused():
    with pytest.raises(md.MotionDataError, match="cannot"):
        md.motion_animation(md.make_object("vehicle", 0, 300), "wave_left")
    with pytest.raises(md.MotionDataError):
        md.motion_animation(md.make_object("plant", 0, 300), "moonwalk")


def test_descriptions_and_specs_are_deterministic_and_varied():
    assert md.clip_specs(20, seed=1) == md.clip_specs(20, seed=1)
    specs = md.clip_specs(40, seed=1)
    assert {s.kind for s in specs} == set(md.KINDS)
    assert all(s.label in md.KIND_MOTIONS[s.kind] for s in specs)
    assert len({s.caption for s in specs}) > 20
    assert any(s.azimuth_deg for s in specs)  # some orbit views
    assert not any(s.azimuth_deg for s in specs if s.label in md.FRONT_RELATIVE)  # left/right stay the front's
    assert "right" in md.describe("character", "wave_right", index=0)
    assert len(md.all_descriptions("animal", "jump")) == 16


def test_rendered_clip_shape_range_and_motion():
    spec = md.ClipSpec("character", 0, "slide_right", 1.0, 0.0, "x", 7)
    clip = md.build_clip(spec, frames=4, resolution=32, count=500)
    assert clip.shape == (4, 3, 32, 32) and clip.dtype == torch.float32
    assert 0.0 <= float(clip.min()) and float(clip.max()) <= 1.0
    assert float(clip.min()) < 0.8  # something is drawn on the white background
    assert (clip[0] - clip[-1]).abs().mean() > 1e-3  # it moved
    again = md.build_clip(spec, frames=4, resolution=32, count=500)
    assert torch.equal(clip, again)


def test_clip_amplitudes_follow_the_requested_range():
    from animus3d_lab.motion_data import MotionDataError, clip_specs

    plain = [s for s in clip_specs(300, seed=3) if s.modifier not in ("a little", "wildly")]
    default = [s.amplitude for s in plain]
    assert 0.7 <= min(default) and max(default) <= 1.2
    low = [s.amplitude for s in clip_specs(300, seed=3, amplitude_range=(0.05, 1.2))
           if s.modifier not in ("a little", "wildly")]
    assert min(low) < 0.3 and max(low) <= 1.2
    assert [s.label for s in clip_specs(50, seed=3)] == [s.label for s in clip_specs(50, seed=3, amplitude_range=(0.05, 1.2))]
    with pytest.raises(MotionDataError, match="amplitude range"):
        clip_specs(4, amplitude_range=(0.0, 1.0))


def test_clip_objects_come_from_the_requested_seed_range():
    from animus3d_lab.motion_data import MotionDataError, clip_specs

    legacy = clip_specs(300, seed=1)
    assert {s.object_seed for s in legacy} == set(range(6))
    assert {s.kind for s in legacy} == set(md.KINDS)
    diverse = clip_specs(300, seed=1, objects_per_kind=2000, first_object_seed=10_000)
    seeds = {s.object_seed for s in diverse}
    assert min(seeds) >= 10_000 and max(seeds) < 12_000 and len(seeds) > 250  # nearly one object a clip
    assert [s.label for s in diverse] == [s.label for s in legacy]  # same motions, other objects
    with pytest.raises(MotionDataError, match="objects_per_kind"):
        clip_specs(4, objects_per_kind=0)
