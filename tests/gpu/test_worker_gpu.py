"""A `draft` job on the tiny prior, end to end on CUDA, through a real worker subprocess.

Run on a GPU machine: `pytest -m gpu tests/gpu`. Skipped without CUDA or gsplat.
"""

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_draft_job_runs_end_to_end_on_cuda_through_a_worker(tmp_path):
    pytest.importorskip("gsplat")
    from animus3d_shared import protocol as p
    from animus3d_shared.samples import make_character
    from tests.helpers_worker import start_worker

    splat = make_character(seed=0)
    with start_worker(tmp_path, "--device", "cuda", startup_timeout=300) as worker:
        client = worker.client(timeout_s=120.0)
        client.submit(splat, "the character waves its right arm", settings={"preset": "draft"}, seed=0)
        accepted = client.wait_for(lambda m: isinstance(m, (p.Accepted, p.Error)), 60)
        assert isinstance(accepted, p.Accepted), accepted
        start = time.monotonic()
        first_preview = None
        stages = set()
        deadline = start + 420
        result = None
        while time.monotonic() < deadline and result is None:
            for msg in client.poll(max_messages=64, max_time_s=0.05):
                if isinstance(msg, p.Progress):
                    stages.add(msg.stage)
                elif isinstance(msg, p.Preview) and first_preview is None:
                    first_preview = time.monotonic() - start
                elif isinstance(msg, (p.Result, p.Error, p.Cancelled)):
                    result = msg
            time.sleep(0.01)
        total = time.monotonic() - start
        print(f"\ndraft job on CUDA (tiny prior, {splat.count} Gaussians): first PREVIEW after {first_preview:.1f}s, "
              f"RESULT after {total:.1f}s; stages {sorted(stages)}")
        assert isinstance(result, p.Result), result
        anim = result.animation
        assert anim.num_gaussians == splat.count and anim.num_frames == 16
        np.testing.assert_array_equal(anim.delta_position[0], 0.0)
        assert np.abs(anim.delta_position[-1]).max() > 0
        assert {"static_prior", "msd"} <= stages
        assert first_preview is not None
