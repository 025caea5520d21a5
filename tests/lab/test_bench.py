"""`animus3d bench` on the CPU at tiny size: the default generate-then-fit preset is measured stage by
stage, as whole jobs through run_job, and against its direct reference, through the stages' own code."""

from __future__ import annotations

import math

from animus3d_lab.bench import (GENERATE_FIT_KEYS, JOB_KEYS, bench_settings, format_table, generates_then_fits,
                                load_bench_prior, run_bench)


def test_standard_is_generate_then_fit_and_in_the_default_list():
    from animus3d_lab.bench import DEFAULT_PRESETS
    from animus3d_shared.settings import JobSettings

    assert "standard" in DEFAULT_PRESETS
    assert generates_then_fits(JobSettings.from_preset("standard"))
    assert not generates_then_fits(JobSettings.from_preset("msd"))


def test_bench_settings_keep_to_the_priors_own_frame_size():
    import torch

    prior = load_bench_prior("tiny", torch.device("cpu"), torch.float32)
    prior.native_resolution = 16
    assert bench_settings("standard", prior, small=False).resolution == 16
    prior.native_resolution = None
    assert bench_settings("standard", prior, small=False).resolution == 256


def test_small_bench_measures_every_stage_of_standard_and_its_reference():
    lines: list[str] = []
    # refine_steps=0: no separate refinement measurement (the whole jobs still refine); keeps the test short
    result = run_bench("cpu", ("standard",), gaussians=200, fit_steps=2, refine_steps=0, small=True,
                       printer=lines.append)
    rows = result["rows"]
    assert set(rows) == {"standard", "standard reference"}
    for name in rows:
        row = rows[name]
        assert "refine_ms" not in row
        for key in [k for k in GENERATE_FIT_KEYS + JOB_KEYS if not k.startswith("refine")]:
            if "gib" in key:  # peak GPU memory: not measured on a CPU
                assert math.isnan(row[key])
            else:
                assert row[key] > 0, (name, key)
        # a job's stages are inside its whole time, and its first preview comes before its end
        assert row["job_first_preview_s"] < row["job_s"]
        assert row["job_timings"]["guide"] + row["job_timings"]["refine"] <= row["job_s"]
        assert row["stage_projected_s"] > row["guide_draw_first_s"] + row["yaw_search_s"]
    text = format_table(result)
    assert "`standard` against its direct reference" in text
    assert "| guide_draw_s |" in text and "| job_s |" in text
    assert any("measured standard" in line for line in lines)


def test_the_embedded_prior_benches_through_a_transport_copy_of_its_encoder(tmp_path):
    """`bench --text-transport`: on a machine without the encoder package the embedded prior reads its
    prompts through a transport copy, with the package's token states (fp16 weights)."""
    import torch

    from animus3d_lab.frozen_text import write_transport_copy
    from animus3d_worker.pipeline import derive_static_prompt
    from animus3d_worker.priors import load_prior

    prompt = "the character waves its right arm"
    captions = [prompt, derive_static_prompt(prompt), ""]
    write_transport_copy(tmp_path / "text", captions, length=32)
    carried = load_bench_prior("embedded", torch.device("cpu"), torch.float32, str(tmp_path / "text"))
    packaged = load_prior("embedded", device="cpu")
    assert "transport" in carried.name
    torch.testing.assert_close(carried.encode_text(captions), packaged.encode_text(captions), atol=2e-2, rtol=0)
