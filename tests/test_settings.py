import math

import pytest

from animus3d_shared.settings import PRESETS, JobSettings, SettingsError


def test_every_preset_is_valid_and_named():
    for name in PRESETS:
        s = JobSettings.from_preset(name)
        assert s.preset == name


def test_overrides_apply_and_round_trip_through_dict():
    s = JobSettings.from_preset("draft", msd_steps=123, arap_weight=2)
    assert s.msd_steps == 123 and s.arap_weight == 2.0 and isinstance(s.arap_weight, float)
    assert JobSettings.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"frames": 1}, "frames"),
        ({"frames": 2.5}, "must be int"),
        ({"msd_steps": True}, "must be int"),
        ({"guidance_scale": math.nan}, "finite"),
        ({"noise_mode": "banana"}, "noise_mode"),
        ({"static_prior": "nope"}, "static_prior"),
        ({"resolution": 100}, "multiple of 8"),
        ({"t_min": 0.9, "t_max": 0.5}, "t_min"),
        ({"no_such_setting": 1}, "unknown setting"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(overrides, fragment):
    with pytest.raises(SettingsError, match=fragment):
        JobSettings.from_preset("test", **overrides)


def test_unknown_preset_and_non_mapping():
    with pytest.raises(SettingsError, match="unknown preset"):
        JobSettings.from_preset("ultra")
    with pytest.raises(SettingsError):
        JobSettings.from_dict(["not", "a", "mapping"])


def test_paper_preset_is_the_paper_and_standard_is_minute_scale():
    paper = JobSettings.from_preset("paper")
    assert (paper.lora_steps, paper.msd_steps, paper.inversion_every, paper.frames, paper.resolution) == \
        (3000, 5000, 1, 16, 256)
    assert JobSettings() == paper.replace(preset="paper")

    def forwards(s: JobSettings) -> float:  # UNet forwards of a job (CFG doubles the guide's sampling)
        msd = s.msd_steps * (3 + s.inversion_steps / s.inversion_every)
        lora = s.lora_steps * s.lora_batch if s.msd_steps and s.static_prior == "lora" else 0
        return lora + msd + 2 * s.guide_denoise_steps * (s.guide_steps > 0) + s.refine_steps

    standard, msd = JobSettings.from_preset("standard"), JobSettings.from_preset("msd")
    # the default generates then fits (no MSD, so no LoRA); msd is the paper's method at minute scale
    assert standard.guide_steps > 0 and standard.msd_steps == 0
    assert msd.guide_steps == 0 and msd.msd_steps > 0 and msd.static_prior == "lora"
    for fast in (standard, msd):  # same output as the paper (frames, resolution), far fewer forwards
        assert (fast.frames, fast.resolution) == (paper.frames, paper.resolution)
        assert forwards(fast) * 10 < forwards(paper)


def test_only_the_generate_then_fit_default_frees_uniform_growth_from_arap():
    assert JobSettings.from_preset("standard").arap_uniform_scale is True
    assert JobSettings.from_preset("paper").arap_uniform_scale is False  # the paper's plain ARAP
    assert JobSettings.from_preset("msd").arap_uniform_scale is False
    assert JobSettings.from_preset("standard").fit_colour_match is True  # the prior recolours; the fit should not paint
    assert JobSettings.from_preset("msd").fit_colour_match is False


def test_standard_draws_its_guide_in_50_ddim_steps():
    # 50 steps: 30/36 suite motions against 27/36 at 20 (docs/evaluation.md)
    assert JobSettings.from_preset("standard").guide_denoise_steps == 50
    assert JobSettings().guide_denoise_steps == 20


def test_clip_frames_count_the_refinements_multiple_and_frames_for_clip_inverts_it():
    draft, standard, high = (JobSettings.from_preset(p) for p in ("draft", "standard", "high"))
    assert draft.clip_frames == draft.frames  # no refinement: the optimised frames are the clip
    assert standard.clip_frames == standard.frames * standard.refine_frame_multiplier == 2 * standard.frames
    assert high.clip_frames == 4 * high.frames
    assert standard.frames_for_clip(7) == 4 and standard.replace(frames=4).clip_frames == 8  # rounded up
    assert standard.frames_for_clip(16) == 8 and draft.frames_for_clip(16) == 16
    assert high.frames_for_clip(1) == 2 and high.frames_for_clip(10_000) == 128  # the setting's range
