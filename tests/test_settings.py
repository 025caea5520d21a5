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
    standard = JobSettings.from_preset("standard")
    # Same output as the paper (frames, resolution), far fewer UNet forwards.
    assert (standard.frames, standard.resolution) == (paper.frames, paper.resolution)
    forwards = lambda s: s.lora_steps * s.lora_batch + s.msd_steps * (3 + s.inversion_steps / s.inversion_every)  # noqa: E731
    assert forwards(standard) * 10 < forwards(paper)
