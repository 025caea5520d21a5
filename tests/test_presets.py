"""The preset ladder: every preset sets only settings that the stages it runs read.

Each preset runs through the real pipeline (CPU, tiny prior) with a settings object that records which
fields the worker reads; a field a preset sets but no stage of its plan ever reads is an inert setting.
Budgets are cut to a few steps (a step count is read whatever its value), keeping each stage planned.
"""

import pytest

from animus3d_shared.settings import ARTIST_PRESETS, DEFAULT_PRESET, PRESETS, JobSettings
from animus3d_worker.models import ModelConfig
from animus3d_worker.pipeline import PriorCache, run_job
from animus3d_worker.stages.plan import stage_plan

READS: set[str] = set()
_FIELDS = {name for name in JobSettings.__dataclass_fields__}
_QUIET = [0]


class RecordingSettings(JobSettings):
    """JobSettings that log every field the code reads (not the reads of copying or validating)."""

    def __getattribute__(self, name):
        if name in _FIELDS and not _QUIET[0]:
            READS.add(name)
        return object.__getattribute__(self, name)

    def _quietly(self, method, *args, **kwargs):
        _QUIET[0] += 1
        try:
            return method(*args, **kwargs)
        finally:
            _QUIET[0] -= 1

    def validate(self) -> None:
        self._quietly(JobSettings.validate, self)

    def to_dict(self):
        return self._quietly(JobSettings.to_dict, self)

    def replace(self, **changes):
        return self._quietly(JobSettings.replace, self, **changes)


def tiny_budget(preset: str) -> dict:
    """A few steps of every stage the preset plans, at a small render size."""
    values = JobSettings.from_preset(preset)
    cut = dict(frames=4, resolution=32, orbit_views=2, preview_every=1)
    for name, steps in (("lora_steps", 2), ("guide_steps", 2), ("msd_steps", 2), ("refine_steps", 1)):
        if getattr(values, name) > 0:
            cut[name] = steps
    cut.update(guide_denoise_steps=2, inversion_steps=2)
    return cut


@pytest.fixture(scope="module")
def priors():
    return PriorCache()


@pytest.fixture(scope="module")
def reading_prior(tmp_path_factory) -> str:
    """The tiny prior with the embedded prior's list of learnt motions: prompts are read, and a prompt
    naming a side of the object reaches the guide draw."""
    import shutil

    from animus3d_worker.priors.loading import EMBEDDED_FOLDER
    from animus3d_worker.priors.tiny import tiny_prior_folder
    from animus3d_worker.understanding import LEARNT_MOTIONS

    folder = tmp_path_factory.mktemp("prior") / "tiny-reading"
    shutil.copytree(tiny_prior_folder(0), folder)
    shutil.copy(EMBEDDED_FOLDER / LEARNT_MOTIONS, folder / LEARNT_MOTIONS)
    return str(folder)


@pytest.mark.parametrize("preset", [p for p in PRESETS if PRESETS[p]])
def test_a_preset_sets_only_what_its_stages_read(preset, priors, reading_prior, tmp_path):
    from animus3d_shared.samples import make_test_blob

    settings = RecordingSettings.from_preset(preset, **tiny_budget(preset))
    assert stage_plan(settings) == stage_plan(JobSettings.from_preset(preset))  # the cut keeps the plan
    READS.clear()
    result = run_job(make_test_blob(seed=1, count=200), "the blob waves its left arm", settings, seed=0,
                     device="cpu", models=ModelConfig(motion_prior=reading_prior), priors=priors,
                     lora_cache_dir=tmp_path)
    assert result.animation.num_frames >= 4
    inert = sorted(set(PRESETS[preset]) - READS)
    assert not inert, f"preset {preset!r} sets {inert}, which its stages {stage_plan(settings)} never read"


def test_the_recorder_sees_an_inert_setting(priors, tmp_path):
    """The check can fail: the LoRA settings are never read when no MSD runs."""
    from animus3d_shared.samples import make_test_blob

    settings = RecordingSettings.from_preset("test", msd_steps=0, lora_steps=3)
    READS.clear()
    run_job(make_test_blob(seed=1, count=200), "the blob jumps", settings, seed=0, device="cpu",
            models=ModelConfig(motion_prior="tiny"), priors=priors, lora_cache_dir=tmp_path)
    assert "lora_steps" not in READS and "lora_rank" not in READS and "msd_lr" not in READS
    assert "refine_steps" in READS


def test_the_artist_ladder_is_the_shipped_method_in_rising_budget():
    ladder = [JobSettings.from_preset(p) for p in ARTIST_PRESETS]
    assert DEFAULT_PRESET == "standard" and ARTIST_PRESETS == ("draft", "standard", "high")
    for s in ladder:
        assert stage_plan(s)[0] == "guide" and "msd" not in stage_plan(s)  # generate, then fit
    work = [(s.guide_steps, s.guide_denoise_steps, s.refine_steps, s.refine_frame_multiplier) for s in ladder]
    assert work[0] <= work[1] <= work[2] and work[0] != work[1] != work[2]
    for name in ("msd", "paper"):  # the paper's method keeps its own presets
        assert stage_plan(JobSettings.from_preset(name)) == ["static_prior", "msd", "refine"]
