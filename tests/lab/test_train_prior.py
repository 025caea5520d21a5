"""train-prior on a tiny CPU configuration: steps, checkpoint, resume, export, load through the loader."""

import json
from dataclasses import replace

import pytest
import torch

from animus3d_lab.motion_data import MOTION_LABELS, all_descriptions, mirror_caption
from animus3d_worker.priors import load_prior
from animus3d_worker.priors.packing import PACKED_FILE
from animus3d_lab.train_prior import PriorTrainer, TrainPriorError, motion_loss_weights, small_test_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    trainer = PriorTrainer(run, small_test_config(vae_steps=2))
    before = {k: v.clone() for k, v in trainer.models["vae"].state_dict().items()}
    state = trainer.train(max_steps=3)
    return run, trainer, state, before


def test_steps_change_weights_and_switch_phase(trained):
    run, trainer, state, before = trained
    assert state.phase == "diffusion" and state.step == 1  # 2 VAE steps, then 1 diffusion step
    after = trainer.models["vae"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert trainer.models["vae"].config.scaling_factor != 1.0  # measured from the data latents
    assert (run / "dataset.pt").is_file()


def test_checkpoint_resumes_where_it_stopped(trained):
    run, trainer, _, _ = trained
    saved = json.loads((run / "checkpoint" / "state.json").read_text())
    assert saved["state"]["phase"] == "diffusion" and saved["state"]["step"] == 1
    assert list((run / "checkpoint" / "unet").glob("*.safetensors"))
    resumed = PriorTrainer(run)
    for name in ("unet", "vae", "text_encoder"):
        a, b = trainer.models[name].state_dict(), resumed.models[name].state_dict()
        assert all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a), name
    state = resumed.train(max_steps=2)
    assert state.phase == "diffusion" and state.step == 3
    assert json.loads((run / "checkpoint" / "state.json").read_text())["state"]["step"] == 3


def test_resume_from_a_missing_checkpoint_is_an_error(tmp_path):
    with pytest.raises(TrainPriorError, match="nothing to resume"):
        PriorTrainer(tmp_path / "run", small_test_config(), resume=tmp_path / "nowhere")


def test_export_loads_through_the_normal_loader(trained, tmp_path):
    _, trainer, _, _ = trained
    folder = trainer.export(tmp_path / "prior")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 15 * 2**20
    assert json.loads((folder / "model_index.json").read_text())["unet"] == ["diffusers", "UNet3DConditionModel"]
    prior = load_prior(str(folder))
    text = prior.encode_text(["a dog jumping", ""])
    assert text.shape == (2, 77, trainer.cfg.text_hidden)
    frames = torch.rand(1, trainer.cfg.frames, 3, trainer.cfg.resolution, trainer.cfg.resolution)
    latents = prior.encode_frames(frames)
    down = 2 ** (len(trainer.cfg.vae_channels) - 1)
    assert latents.shape == (1, 4, trainer.cfg.frames, trainer.cfg.resolution // down, trainer.cfg.resolution // down)
    eps = prior.predict_noise(latents, 500, text[:1])
    assert eps.shape == latents.shape and torch.isfinite(eps).all()


def test_training_continues_from_an_exported_prior(trained, tmp_path):
    """The committed fp16 export is enough to continue training when the checkpoint is gone."""
    _, trainer, _, _ = trained
    folder = trainer.export(tmp_path / "prior")
    resumed = PriorTrainer(tmp_path / "run2", resume=folder)
    assert resumed.cfg == trainer.cfg
    assert resumed.state.phase == "diffusion" and resumed.state.step == trainer.state.step
    for name in ("unet", "vae", "text_encoder"):
        a, b = trainer.models[name].state_dict(), resumed.models[name].state_dict()
        assert all(b[k].dtype == torch.float32 for k in b), name
        assert all(torch.allclose(a[k].float(), b[k], atol=1e-2, rtol=1e-2) for k in a), name
    assert resumed.models["vae"].config.scaling_factor == trainer.models["vae"].config.scaling_factor
    state = resumed.train(max_steps=1)
    assert state.phase == "diffusion" and state.step == trainer.state.step + 1


def test_train_prior_command(tmp_path):
    from animus3d_worker.cli import main

    config = tmp_path / "config.json"
    config.write_text(json.dumps(small_test_config().to_json()))
    out = tmp_path / "run"
    args = ["train-prior", "--out", str(out), "--minutes", "1", "--config", str(config)]
    assert main(args + ["--max-steps", "1"]) == 0
    assert (out / "export" / "model_index.json").is_file()
    assert main(args + ["--max-steps", "2"]) == 0
    state = json.loads((out / "checkpoint" / "state.json").read_text())["state"]
    assert state["phase"] == "diffusion"  # 2 VAE steps, then diffusion


def test_an_exported_prior_can_be_fine_tuned_on_smaller_motions(trained, tmp_path):
    """amplitude_min may change on resume: the dataset is re-rendered, the weights carry over."""
    _, trainer, _, _ = trained
    folder = trainer.export(tmp_path / "prior")
    resumed = PriorTrainer(tmp_path / "run3", resume=folder, tuning={"amplitude_min": 0.05})
    assert resumed.cfg.amplitude_min == 0.05 and resumed.state.step == trainer.state.step
    state = resumed.train(max_steps=1)
    assert state.step == trainer.state.step + 1
    cached = torch.load(tmp_path / "run3" / "dataset.pt", weights_only=False)
    assert cached["key"]["amplitude_min"] == 0.05
    with pytest.raises(TrainPriorError, match="cannot change unet_channels"):
        PriorTrainer(tmp_path / "run4", resume=folder, tuning={"unet_channels": (32, 64)})


def test_a_run_from_before_object_diversity_resumes_on_many_new_objects(trained, tmp_path):
    """A saved config without the object fields means 6 objects a kind from seed 0; a resume may
    switch to other clips and objects: the dataset is re-rendered from them and the weights carry over."""
    from animus3d_lab.prior_check import HELD_OUT_OBJECT_SEED
    from animus3d_lab.train_prior import EXPORT_MARKER, TrainConfig

    _, trainer, _, _ = trained
    folder = trainer.export(tmp_path / "prior")
    marker = json.loads((folder / EXPORT_MARKER).read_text())
    for name in ("objects_per_kind", "first_object_seed"):
        del marker["config"][name]
    (folder / EXPORT_MARKER).write_text(json.dumps(marker))
    legacy = PriorTrainer(tmp_path / "legacy", resume=folder)
    assert (legacy.cfg.objects_per_kind, legacy.cfg.first_object_seed) == (6, 0)
    tuning = {"clips": 6, "data_seed": 5, "objects_per_kind": 50, "first_object_seed": 10_000}
    resumed = PriorTrainer(tmp_path / "diverse", resume=folder, tuning=tuning)
    state = resumed.train(max_steps=1)
    assert state.step == trainer.state.step + 1
    cached = torch.load(tmp_path / "diverse" / "dataset.pt", weights_only=False)
    assert cached["key"]["clips"] == 6 and cached["key"]["objects_per_kind"] == 50
    assert resumed.clips.shape[0] == 6
    assert TrainConfig.first_object_seed + TrainConfig.objects_per_kind <= HELD_OUT_OBJECT_SEED
    with pytest.raises(TrainPriorError, match="objects_per_kind must be at least 1"):
        PriorTrainer(tmp_path / "bad", resume=folder, tuning={"objects_per_kind": 0})


def test_an_impossible_amplitude_range_is_refused_before_any_work(tmp_path):
    with pytest.raises(TrainPriorError, match="amplitude_min 2.0"):
        PriorTrainer(tmp_path / "run", small_test_config(), tuning={"amplitude_min": 2.0})
    assert not (tmp_path / "run" / "tokenizer").exists()


def test_motion_loss_weights_stress_only_what_moves():
    still = torch.randn(2, 4, 1, 8, 8).expand(2, 4, 6, 8, 8).clone()
    assert torch.allclose(motion_loss_weights(still, 4.0), torch.ones(2, 1, 6, 8, 8))
    moving = still.clone()
    moving[0, :, 3:, 2:4, 2:4] += 2.0  # an "arm" moves in the second half of clip 0
    w = motion_loss_weights(moving, 4.0)
    assert w[0, 0, 3:, 2:4, 2:4].min() > 4.0 and w[0, 0, 0, 2:4, 2:4].min() > 1.0
    assert torch.allclose(w[0, 0, :, 5:, 5:], torch.ones_like(w[0, 0, :, 5:, 5:]))
    assert torch.allclose(w[1], torch.ones_like(w[1]))


def test_motion_weight_may_be_set_on_resume_and_trains(trained, tmp_path):
    _, trainer, _, _ = trained
    folder = trainer.export(tmp_path / "prior")
    resumed = PriorTrainer(tmp_path / "run5", resume=folder, tuning={"motion_weight": 4.0})
    assert resumed.cfg.motion_weight == 4.0
    before = [p.detach().clone() for p in resumed.models["unet"].parameters()]
    state = resumed.train(max_steps=1)
    assert state.step == trainer.state.step + 1 and torch.isfinite(torch.tensor(state.losses[-1][2]))
    assert any(not torch.equal(a, b) for a, b in zip(before, resumed.models["unet"].parameters()))
    with pytest.raises(TrainPriorError, match="motion_weight must be 0 or more"):
        PriorTrainer(tmp_path / "run6", small_test_config(), tuning={"motion_weight": -1.0})


def test_mirror_caption_swaps_sides_and_nothing_else():
    assert mirror_caption("a robot sliding to the left") == "a robot sliding to the right"
    assert mirror_caption("the figure waves hello with its right arm") == "the figure waves hello with its left arm"
    assert mirror_caption("a dog rocking left and right") == "a dog rocking left and right"  # symmetric
    assert mirror_caption("a plant leftover righteous") == "a plant leftover righteous"  # whole words only
    for label in MOTION_LABELS:
        for caption in all_descriptions("character", label):
            mirrored_label = label.replace("left", "#").replace("right", "left").replace("#", "right")
            assert mirror_caption(caption) in all_descriptions("character", mirrored_label)


def test_mirrored_samples_are_flipped_clips_with_mirrored_captions(trained, tmp_path):
    _, trainer, _, _ = trained
    folder = trainer.export(tmp_path / "prior")
    resumed = PriorTrainer(tmp_path / "run7", resume=folder, tuning={"mirror_probability": 1.0})
    resumed.train(max_steps=1)  # trains with mirroring on, and loads the dataset
    resumed.cfg = replace(resumed.cfg, text_dropout=0.0)
    index = torch.arange(len(resumed.captions))
    latents, captions = resumed.diffusion_batch(index)
    assert captions == [mirror_caption(c) for c in resumed.captions]
    expected = resumed.encode_clips(resumed._frames(index).flip(-1))
    assert torch.allclose(latents, expected, atol=1e-5)
    assert not torch.allclose(latents, resumed.encode_clips(resumed._frames(index)), atol=1e-3)
    with pytest.raises(TrainPriorError, match="mirror_probability must be in"):
        PriorTrainer(tmp_path / "run8", small_test_config(), tuning={"mirror_probability": 1.5})


def test_an_export_over_the_limit_is_stored_in_8_bits_and_still_loads_and_resumes(trained, tmp_path):
    _, trainer, _, _ = trained
    plain = trainer.export(tmp_path / "fp16")
    fp16_size = sum(p.stat().st_size for p in plain.rglob("*") if p.is_file())
    assert json.loads((plain / "animus3d_prior.json").read_text())["weights"] == "float16"
    packed = trainer.export(tmp_path / "int8", limit_bytes=fp16_size - 1)
    assert json.loads((packed / "animus3d_prior.json").read_text())["weights"] == "int8"
    assert (packed / "unet" / PACKED_FILE).is_file()
    assert sum(p.stat().st_size for p in packed.rglob("*") if p.is_file()) < fp16_size
    prior = load_prior(str(packed))
    assert prior.native_resolution == trainer.cfg.resolution
    resumed = PriorTrainer(tmp_path / "run9", resume=packed)
    assert resumed.state.step == trainer.state.step
    with pytest.raises(TrainPriorError, match="even with 8-bit weights"):
        trainer.export(tmp_path / "too-big", limit_bytes=1000)
    assert not (tmp_path / "too-big").exists() and not (tmp_path / "too-big.tmp").exists()


def test_model_widths_that_cannot_be_built_are_refused_before_any_work(tmp_path):
    with pytest.raises(TrainPriorError, match="multiple of 32"):
        PriorTrainer(tmp_path / "run", small_test_config(unet_channels=(72, 144, 144)))
    with pytest.raises(TrainPriorError, match="vae_channels"):
        PriorTrainer(tmp_path / "run", small_test_config(vae_channels=(16,)))
    assert not (tmp_path / "run" / "tokenizer").exists()


def test_an_export_records_each_call_with_its_settings(trained, tmp_path):
    _, trainer, _, _ = trained
    first = trainer.state.history[0]
    assert first["from"] == ["vae", 0] and first["to"] == ["diffusion", 1] and first["lr"] == trainer.cfg.lr
    folder = trainer.export(tmp_path / "prior")
    resumed = PriorTrainer(tmp_path / "run9", resume=folder, tuning={"lr": 1e-3, "mirror_probability": 0.5})
    resumed.train(max_steps=1)
    marker = json.loads((resumed.export(tmp_path / "prior2") / "animus3d_prior.json").read_text())
    *earlier, last = marker["history"]
    assert earlier == json.loads(json.dumps(trainer.state.history))  # carried over from the first export
    assert last["from"] == [trainer.state.phase, trainer.state.step]
    assert last["to"] == [trainer.state.phase, trainer.state.step + 1]
    assert (last["lr"], last["mirror_probability"], last["device"]) == (1e-3, 0.5, "cpu") and last["seconds"] > 0


def test_a_moving_average_of_the_weights_is_kept_exported_and_resumed(trained, tmp_path):
    """ema_decay (may be switched on when resuming): the average follows the documented warm-up,
    the export carries it instead of the raw weights, and a checkpoint brings it back exactly."""
    from diffusers import UNet3DConditionModel

    _, trainer, _, _ = trained
    folder = trainer.export(tmp_path / "prior")
    run = tmp_path / "run-ema"
    resumed = PriorTrainer(run, resume=folder, tuning={"ema_decay": 0.5, "lr": 1e-2})
    key = next(k for k, _ in resumed.models["unet"].named_parameters() if k.endswith("weight"))
    raw = []
    for _ in range(3):
        resumed.train(max_steps=1)
        raw.append(dict(resumed.models["unet"].named_parameters())[key].detach().clone())
    expected = raw[0]  # the average starts at the weights of its first update
    for n, weights in enumerate(raw[1:], start=1):
        decay = min(0.5, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * weights
    average = resumed.ema[f"unet.{key}"]
    assert resumed.state.ema_updates == 3
    assert torch.allclose(average, expected, atol=1e-6)
    assert (average - raw[-1]).abs().max() > 1e-3  # a real average, not the last weights

    exported = resumed.export(tmp_path / "prior-ema")
    assert json.loads((exported / "animus3d_prior.json").read_text())["averaged_weights"] is True
    unet = UNet3DConditionModel.from_pretrained(str(exported / "unet"))
    written = dict(unet.named_parameters())[key].detach().float()
    assert torch.allclose(written, average.half().float())
    assert torch.equal(dict(resumed.models["unet"].named_parameters())[key], raw[-1])  # training weights kept

    again = PriorTrainer(run)
    assert again.state.ema_updates == 3 and torch.equal(again.ema[f"unet.{key}"], average)
    assert set(again.ema) == set(resumed.ema)
    again.train(max_steps=1)
    assert again.state.ema_updates == 4
    without = PriorTrainer(tmp_path / "run-plain", resume=folder)
    without.train(max_steps=1)
    assert without.ema is None and not (tmp_path / "run-plain" / "checkpoint" / "ema.safetensors").exists()


# ---- the MiniLM-conditioned prior ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("minilm")
    trainer = PriorTrainer(run, small_test_config(text_encoder="minilm", vae_steps=1))
    trainer.train(max_steps=3)
    return run, trainer


def test_a_minilm_run_trains_the_unet_on_the_states_the_worker_computes(minilm_run, tmp_path):
    from animus3d_worker.priors.minilm import HIDDEN, MaskedTextEncoder

    run, trainer = minilm_run
    assert set(trainer.models) == {"unet", "vae"}  # the text encoder is frozen, not trained or checkpointed
    assert trainer.models["unet"].config.cross_attention_dim == HIDDEN
    assert not (run / "checkpoint" / "text_encoder").exists()
    folder = trainer.export(tmp_path / "prior")
    assert not list((folder / "text_encoder").glob("*.safetensors"))  # a reference to the package, no copy
    prior = load_prior(str(folder))
    assert isinstance(prior.text_encoder, MaskedTextEncoder)
    captions = ["a dog jumping up and down", ""]
    served = prior.encode_text(captions)
    assert served.shape == (2, trainer.cfg.text_length, HIDDEN)
    trained_on = trainer._encode_text(captions)
    assert torch.allclose(served.float(), trained_on.cpu(), atol=1e-5)
    resumed = PriorTrainer(run)  # a checkpoint of a MiniLM run resumes
    assert resumed.state.step == trainer.state.step and resumed.cfg.text_encoder == "minilm"


def test_a_transport_copy_gives_the_packaged_states_and_refuses_unknown_words(minilm_run, tmp_path):
    from animus3d_lab.frozen_text import FrozenText, FrozenTextError, write_transport_copy
    from animus3d_lab.train_prior import training_captions

    _, trainer = minilm_run
    captions = training_captions(trainer.cfg)
    manifest = write_transport_copy(tmp_path / "text", captions, trainer.cfg.text_length)
    size = sum(p.stat().st_size for p in (tmp_path / "text").rglob("*") if p.is_file())
    assert size < 26 * 2**20 and manifest["kept_tokens"] < 1000  # the embedding table cut to the captions' tokens
    copy = FrozenText(trainer.cfg.text_length, tmp_path / "text")
    assert copy.check_reference() < 0.02  # float16 weights
    assert (copy.states(captions[:4]) - trainer._encode_text(captions[:4]).cpu()).abs().max() < 0.02
    with pytest.raises(FrozenTextError, match="lacks tokens"):
        copy.states(["a zebra juggles flaming torches"])
    other = PriorTrainer(tmp_path / "run", small_test_config(text_encoder="minilm"), text_transport=tmp_path / "text")
    assert other.text.transport == tmp_path / "text"


def test_a_run_started_from_an_exported_prior_keeps_its_vae_and_fitting_unet_weights(trained, tmp_path):
    _, clip_trainer, _, _ = trained
    source = clip_trainer.export(tmp_path / "clip_prior")
    run = PriorTrainer(tmp_path / "run", small_test_config(text_encoder="minilm"), init_from=source)
    assert run.state.phase == "diffusion" and run.state.step == 0
    vae_a, vae_b = clip_trainer.models["vae"].state_dict(), run.models["vae"].state_dict()
    assert all(torch.allclose(vae_a[k].half().float(), vae_b[k]) for k in vae_a)
    old, new = clip_trainer.models["unet"].state_dict(), run.models["unet"].state_dict()
    kept = [k for k in new if old[k].shape == new[k].shape]
    fresh = [k for k in new if old[k].shape != new[k].shape]
    assert fresh and all(".attn2.to_k." in k or ".attn2.to_v." in k for k in fresh)  # text projections only
    assert all(torch.allclose(old[k].half().float(), new[k]) for k in kept)
    run.train(max_steps=1)
    info = json.loads((run.export(tmp_path / "out") / "animus3d_prior.json").read_text())
    assert info["initialised_from"]["folder"] == "clip_prior" and info["step"] == 1
    with pytest.raises(TrainPriorError, match="already holds"):
        PriorTrainer(tmp_path / "run", init_from=source)


def test_the_versioned_training_configs_are_valid_train_configs():
    from pathlib import Path

    from animus3d_lab.train_prior import TrainConfig, check_config

    configs = sorted((Path(__file__).parents[2] / "lab" / "configs").glob("*.json"))
    assert configs
    for path in configs:
        fields = json.loads(path.read_text())
        assert set(fields) <= set(TrainConfig().to_json()), path.name
        check_config(TrainConfig.from_json({**TrainConfig().to_json(), **fields}))
