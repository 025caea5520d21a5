"""The motion vocabulary and object families of the synthetic data: every family builds, every motion
it declares moves it (a part motion mainly its part), caption modifiers change the clip, directional
motions mirror with their captions, captured-splat flaws stay few and near, all deterministic by seed."""

import math

import numpy as np
import pytest

from animus3d_lab import motion_data as md

PART_OF = {"nod": ("head",), "shake_head": ("head",), "wave_left": ("left_arm",), "wave_right": ("right_arm",),
           "kick": ("right_leg",), "flap_wings": ("left_wing", "right_wing"), "wag_tail": ("tail",),
           "open_lid": ("lid",), "open_door": ("door",)}
MIRROR = np.diag([-1.0, 1.0, 1.0])  # the image flipped left-right: x -> -x


def _motion(anim) -> np.ndarray:
    """Per-Gaussian largest displacement over the clip."""
    return np.linalg.norm(anim.delta_position, axis=-1).max(0)


def test_there_are_enough_motions_and_families_and_the_first_ones_keep_their_names():
    assert len(md.MOTION_LABELS) >= 30 and len(set(md.MOTION_LABELS)) == len(md.MOTION_LABELS)
    assert md.MOTION_LABELS[:13] == md.LEGACY_MOTIONS and len(md.FAMILIES) >= 12
    assert md.FAMILIES[:4] == md.LEGACY_KINDS == ("character", "animal", "plant", "vehicle")
    for kind in md.LEGACY_KINDS:  # their first motions, in their order, then the new ones
        assert md.KIND_MOTIONS[kind][:len(md.LEGACY_KIND_MOTIONS[kind])] == md.LEGACY_KIND_MOTIONS[kind]
    assert set(md.DESCRIPTIONS) == set(md.MOTION_LABELS) == set(md.MOTION_TYPES)
    assert all("open_lid" not in md.KIND_MOTIONS[k] for k in md.FAMILIES if k != "chest")  # a lid needs a lid


@pytest.mark.parametrize("kind", md.FAMILIES)
def test_every_family_builds_at_several_seeds_and_is_deterministic(kind):
    shapes = []
    for seed in (0, 1, 17):
        obj = md.make_object(kind, seed, 500)
        again = md.make_object(kind, seed, 500)
        assert obj.splat.count == 500 and np.array_equal(obj.splat.means, again.splat.means)
        assert np.array_equal(obj.splat.sh_dc, again.splat.sh_dc)
        assert np.isfinite(obj.splat.means).all() and obj.height > 0.1
        assert set(obj.pivots) == set(obj.part_names)
        for label, parts in PART_OF.items():
            if label in md.KIND_MOTIONS[kind]:
                assert set(parts) <= set(obj.part_names), (kind, label)
        shapes.append(obj.splat.means)
    assert not np.array_equal(shapes[0], shapes[1])  # seeds differ


@pytest.mark.parametrize("kind", md.FAMILIES)
def test_every_declared_motion_starts_at_rest_moves_and_a_part_motion_moves_mainly_its_part(kind):
    obj = md.make_object(kind, 3, 600)
    for label in md.KIND_MOTIONS[kind]:
        anim = md.motion_animation(obj, label, frames=16)
        assert np.isfinite(anim.delta_position).all() and np.isfinite(anim.delta_rotation).all()
        assert np.abs(anim.delta_position[0]).max() < 1e-5, (kind, label)
        moved = np.abs(anim.delta_position).max() + np.abs(anim.delta_scale).max()
        assert (moved < 1e-6) == (label == "still"), (kind, label)
        if label in PART_OF:
            mask = np.isin(np.asarray(obj.splat.part_ids), [obj.part_names.index(p) for p in PART_OF[label]])
            energy = _motion(anim)
            assert energy[mask].sum() > 0.95 * energy.sum(), (kind, label)
    with pytest.raises(md.MotionDataError, match="cannot"):
        md.motion_animation(md.make_object("mushroom", 0, 300), "open_door")


def _cycles(signal: np.ndarray) -> float:
    """Cycles of an oscillation that starts at 0: (sign changes + 1) / 2."""
    s = signal[np.abs(signal) > 1e-3 * np.abs(signal).max()]
    return (int(np.sum(np.sign(s[1:]) != np.sign(s[:-1]))) + 1) / 2


def _hops(height: np.ndarray) -> int:
    """Hops of a bouncing height: its local maxima."""
    return int(np.sum((height[1:-1] > height[:-2]) & (height[1:-1] > height[2:])))


@pytest.mark.parametrize("kind, label, measure", [
    ("character", "sway", "x"), ("animal", "nod", "part"), ("bird", "flap_wings", "part"),
    ("bird", "wag_tail", "part"), ("snowman", "shake_head", "part"), ("bottle", "shake", "x"),
    ("chair", "jump", "hops"), ("table", "bounce", "hops"), ("toy", "hop_forward", "hops"),
    ("plant", "spin", "turns"), ("house", "spin_left", "turns"),
])
def test_speed_and_repetition_words_change_the_cycle_count(kind, label, measure):
    obj = md.make_object(kind, 2, 600)
    counted = {}
    for modifier in ("", "slowly", "twice", "quickly", "over and over"):
        timing = md.modifier_timing(label, modifier)
        anim = md.motion_animation(obj, label, 97, cycles=timing.cycles)
        d = anim.delta_position
        if measure == "x":
            value = _cycles(d[:, :, 0].mean(1))
        elif measure == "part":
            moving = int(np.argmax(_motion(anim)))
            track = d[:, moving] - d[:, moving].mean(0)
            axis = np.linalg.svd(track, full_matrices=False)[2][0]
            value = _cycles(d[:, moving] @ axis)
        elif measure == "hops":
            value = _hops(d[:, :, 2].mean(1))
        else:  # turns of a point away from the spin axis
            i = int(np.argmax(np.linalg.norm(obj.splat.means[:, :2] - obj.base[:2], axis=1)))
            p = obj.splat.means[i, :2] + d[:, i, :2] - obj.base[:2]
            value = abs(np.unwrap(np.arctan2(p[:, 1], p[:, 0]))[-1] - math.atan2(p[0, 1], p[0, 0])) / (2 * math.pi)
        counted[modifier] = round(value * 2) / 2
    assert counted["slowly"] == 1 and counted["twice"] == 2 and counted["quickly"] == counted["over and over"] == 3
    assert counted[""] == md.DEFAULT_CYCLES[label]
    assert set(md.modifiers_for(label)) >= {m for m in ("slowly", "quickly", "twice")
                                            if counted[m] != counted[""]}  # a caption carries only real changes


def test_extent_and_goal_motions_follow_speed_and_amplitude_words():
    obj = md.make_object("chest", 1, 600)
    reach = {}
    for modifier in ("", "slowly", "quickly", "a little", "wildly"):
        t = md.modifier_timing("slide_left", modifier)
        anim = md.motion_animation(obj, "slide_left", 16, 1.0 * t.amplitude, speed=t.speed)
        reach[modifier] = -anim.delta_position[-1, :, 0].mean()
    assert reach["slowly"] < reach["a little"] + 1e-9 < reach[""] < reach["wildly"] < reach["quickly"] + 1e-9
    lid = md.motion_animation(obj, "open_lid", 16, speed=md.modifier_timing("open_lid", "quickly").speed)
    slow_lid = md.motion_animation(obj, "open_lid", 16)
    assert np.allclose(lid.delta_position[8], lid.delta_position[-1], atol=1e-6)  # open by mid-clip, then held
    assert not np.allclose(slow_lid.delta_position[8], slow_lid.delta_position[-1], atol=1e-3)
    assert md.modifiers_for("still") == () and "slowly" not in md.modifiers_for("open_lid")


def test_captions_name_their_modifier_and_specs_carry_its_timing():
    specs = md.clip_specs(600, seed=4)
    assert 0.25 < np.mean([bool(s.modifier) for s in specs]) < 0.55
    assert any(s.flaws for s in specs) and not all(s.flaws for s in specs)
    assert {s.kind for s in specs} == set(md.KINDS) and not {s.kind for s in specs} & set(md.HELDOUT_FAMILIES)
    for s in specs:
        assert s.label in md.KIND_MOTIONS[s.kind]
        assert s.caption.endswith(s.modifier) and (not s.modifier or s.modifier in md.modifiers_for(s.label))
        assert s.cycles == md.modifier_timing(s.label, s.modifier).cycles
        assert s.speed == md.modifier_timing(s.label, s.modifier).speed
        if s.label in md.FRONT_RELATIVE:
            assert s.azimuth_deg == 0.0
    assert md.describe("bird", "flap_wings", index=0, modifier="quickly") == "a bird flapping its wings quickly"
    with pytest.raises(md.MotionDataError, match="modifier"):
        md.describe("bird", "flap_wings", index=0, modifier="sideways")


def test_a_spec_s_cycles_and_flaws_reach_the_rendered_clip():
    spec = md.ClipSpec("animal", 0, "wag_tail", 1.0, 0.0, "x", 7)
    plain = md.build_clip(spec, frames=6, resolution=32, count=400)
    quick = md.build_clip(md.ClipSpec("animal", 0, "wag_tail", 1.0, 0.0, "x", 7, cycles=3.0), frames=6,
                          resolution=32, count=400)
    flawed = md.build_clip(md.ClipSpec("animal", 0, "wag_tail", 1.0, 0.0, "x", 7, flaws=True), frames=6,
                           resolution=32, count=400)
    assert not np.allclose(plain.numpy(), quick.numpy()) and not np.allclose(plain.numpy(), flawed.numpy())
    assert float(flawed.min()) < 0.8  # the flawed object is framed (drawn), wherever and however large it is


@pytest.mark.parametrize("label", [m for m in md.MOTION_LABELS if m.endswith("_left")])
def test_directional_motions_and_their_captions_mirror_together(label):
    other = label.replace("_left", "_right")
    for caption in md.all_captions("vehicle", label):
        assert md.mirror_caption(caption) in md.all_captions("vehicle", other)
    for caption in md.all_captions("vehicle", other):
        assert md.mirror_caption(caption) in md.all_captions("vehicle", label)
    if label in md.WHOLE_MOTIONS:  # the mirrored motion is the other one, seen in a mirror
        obj = md.make_object("vehicle", 0, 300)
        for a, b in zip(md.motion_poses(obj, label, 9), md.motion_poses(obj, other, 9)):
            assert np.allclose(MIRROR @ a.rotation @ MIRROR, b.rotation, atol=1e-9)
            assert np.allclose(MIRROR @ a.translation, b.translation, atol=1e-9)


def test_captured_flaws_are_few_near_deterministic_and_any_scale():
    heights, offsets = [], []
    for seed in range(12):
        clean = md.make_object("chair", seed, 1000)
        obj = md.make_object("chair", seed, 1000, flaws=True)
        assert obj.splat.count == 1000 and np.isfinite(obj.splat.means).all()
        assert np.array_equal(obj.splat.means, md.make_object("chair", seed, 1000, flaws=True).splat.means)
        floaters = obj.part_mask("floaters")
        assert 1 <= floaters.sum() <= 0.005 * 1000
        scale = obj.height / clean.height
        body = obj.splat.means[~floaters]
        lo, hi = body.min(0), body.max(0)
        margin = 0.25 * (hi - lo).max()  # the placed (tilted) body's box, plus a quarter of its size
        assert (obj.splat.means[floaters] > lo - margin).all() and (obj.splat.means[floaters] < hi + margin).all()
        heights.append(obj.height)
        offsets.append(np.linalg.norm(obj.base) / obj.height)
        assert abs(np.log(np.exp(obj.splat.log_scales).mean() / np.exp(clean.splat.log_scales).mean() / scale)) < 0.3
        anim = md.motion_animation(obj, "open_door" if "door" in obj.part_names else "kick"
                                   if "right_leg" in obj.part_names else "spin", 8)
        assert np.isfinite(anim.delta_position).all()
    assert min(heights) < 0.1 and max(heights) > 3.0  # centimetres to metres and beyond
    assert max(offsets) > 0.5  # off-centre
    obj = md.make_object("cabinet", 4, 800, flaws=True)
    anim = md.motion_animation(obj, "open_door", 8)
    energy = _motion(anim)
    assert energy[obj.part_mask("door")].sum() > 0.9 * energy.sum()  # the part motion still moves its part


def test_every_caption_fits_the_prior_s_32_tokens():
    from animus3d_worker.priors.minilm import encoder_folder
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_folder()), local_files_only=True)
    longest = max((c for kind in md.FAMILIES for label in md.KIND_MOTIONS[kind]
                   for c in md.all_captions(kind, label)), key=lambda c: len(tokenizer(c)["input_ids"]))
    assert len(tokenizer(longest)["input_ids"]) <= 32, longest


def test_the_learnt_motions_document_separates_synonyms_from_unlearnt_motions():
    from animus3d_worker.understanding import LearntMotions, understand

    document = md.learnt_motions_document()
    assert set(document["motions"]) == set(md.MOTION_LABELS)
    learnt = LearntMotions.from_json(document)
    for prompt, label in (("the chair leaps", "jump"), ("the bottle rotates in place", "spin"),
                          ("the vase stays motionless", "still"), ("the bird flaps its wings", "flap_wings"),
                          ("the chest opens its lid", "open_lid"), ("the statue bows", "bow")):
        result = understand(prompt, learnt)
        assert result.understood and result.nearest[0][0] == label, (prompt, result.nearest[:3])
    for prompt in ("blorf zindle quax", "the girl reads a book", "the clown juggles",
                   "the man plays the piano"):
        assert not understand(prompt, learnt).understood, prompt
