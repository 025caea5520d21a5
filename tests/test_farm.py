"""The farm end to end: a real local Ray cluster (two CPU slots), a real `animus3d farm` process
joined to it, and real DEALER clients.

The test process starts the Ray cluster (``ray.init``) once for the module; the farm subprocess
joins it by address, and the tests reach the farm's actors through Ray to kill one mid-job.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from animus3d_shared import protocol as p
from helpers_worker import launch_worker, small_splat

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.timeout(300)
JOB_TIMEOUT = 150.0
CLIENT_TIMEOUT_S = 10.0  # the client's heartbeat timeout: silence this long means the farm is lost
LONG_JOB = {"preset": "test", "msd_steps": 20000, "preview_every": 0}
OVERLAP_JOB = {"preset": "test", "msd_steps": 40, "preview_every": 0}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, namespace="animus3d", log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def farm(cluster, tmp_path_factory):
    worker = launch_worker(tmp_path_factory.mktemp("farm"), "--ray", cluster, "--slots", "2", "--cpus-per-slot", "1",
                           "--max-gaussians", "4000", "--max-queued-per-client", "4", "--max-queued", "64",
                           subcommand="farm", startup_timeout=120.0)
    try:
        yield worker
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def is_(*kinds):
    return lambda m: isinstance(m, kinds)


def submit(client, splat, settings=None, seed=0, prompt="a blob bounces up and down"):
    client.submit(splat, prompt, settings=settings or {"preset": "test"}, seed=seed)
    reply = client.wait_for(is_(p.Accepted, p.Error), 30.0)
    assert isinstance(reply, p.Accepted), reply
    return reply


def follow(client, job_id, timeout=JOB_TIMEOUT):
    """(arrival time, message) for every message of ``job_id`` until its final one."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = client.wait_for(lambda m: getattr(m, "job_id", None) == job_id
                              or (isinstance(m, p.Error) and m.code == "unreachable"), deadline - time.monotonic())
        seen.append((time.monotonic(), msg))
        if isinstance(msg, (p.Result, p.Error, p.Cancelled)):
            return seen
    raise AssertionError(f"job {job_id} did not finish in {timeout} s; saw {[type(m).__name__ for _, m in seen]}")


def running_interval(seen):
    first = next(t for t, m in seen if isinstance(m, p.Progress))
    return first, seen[-1][0]


def actor_running(job_id, timeout=60.0):
    """The farm actor whose current job is ``job_id`` (found through Ray by its slot name)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in ray.util.list_named_actors():
            if not name.startswith("animus3d-slot-"):
                continue
            try:
                actor = ray.get_actor(name)
                if ray.get(actor.current_job.remote(), timeout=5) == job_id:
                    return actor
            except (ValueError, ray.exceptions.RayError):
                continue
        time.sleep(0.2)
    raise AssertionError(f"no farm actor runs {job_id}")


def test_welcome_and_status_describe_the_cluster(farm):
    client = farm.client()
    client.request_status()
    reply = client.wait_for(is_(p.StatusReply, p.Error), 10.0)
    assert isinstance(reply, p.StatusReply), reply
    assert reply.device.startswith("ray farm: 1 node(s)"), reply.device
    assert "2 slot(s) on cpu" in reply.device


def test_status_lists_every_running_job_of_the_client(farm):
    client = farm.client(token="farm-status-token-0001")
    jobs = [submit(client, small_splat(90 + i, seed=i), {**OVERLAP_JOB, "msd_steps": 400}, seed=i).job_id
            for i in range(2)]
    deadline = time.monotonic() + 120
    running = []
    while time.monotonic() < deadline:
        client.request_status()
        reply = client.wait_for(is_(p.StatusReply, p.Error), 10.0)
        assert isinstance(reply, p.StatusReply), reply
        running = sorted(job["job_id"] for job in reply.running_jobs)
        if len(running) == 2:
            break
        time.sleep(0.3)
    assert running == sorted(jobs), running
    assert reply.running["job_id"] in jobs
    for job_id in jobs:
        client.cancel(job_id)
    for job_id in jobs:
        assert isinstance(follow(client, job_id)[-1][1], (p.Cancelled, p.Result))


def test_two_jobs_run_at_the_same_time(farm):
    a, b = farm.client(), farm.client()
    job_a = submit(a, small_splat(100, seed=1), OVERLAP_JOB, seed=1)
    job_b = submit(b, small_splat(110, seed=2), OVERLAP_JOB, seed=2)
    seen = {}
    threads = [threading.Thread(target=lambda c=c, j=j: seen.__setitem__(j.job_id, follow(c, j.job_id)))
               for c, j in ((a, job_a), (b, job_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    start_a, end_a = running_interval(seen[job_a.job_id])
    start_b, end_b = running_interval(seen[job_b.job_id])
    assert isinstance(seen[job_a.job_id][-1][1], p.Result) and isinstance(seen[job_b.job_id][-1][1], p.Result)
    assert start_a < end_b and start_b < end_a, (start_a, end_a, start_b, end_b)


def test_a_job_cancelled_on_the_farm_stops_within_two_seconds(farm):
    client = farm.client()
    accepted = submit(client, small_splat(100), LONG_JOB)
    msg = client.wait_for(lambda m: isinstance(m, p.Progress) and m.stage == "msd"
                          or isinstance(m, p.Error), 90.0)
    assert isinstance(msg, p.Progress), msg
    start = time.monotonic()
    client.cancel(accepted.job_id)
    final = follow(client, accepted.job_id, timeout=15.0)[-1][1]
    took = time.monotonic() - start
    print(f"cancel on the farm: {took * 1000:.0f} ms")
    assert isinstance(final, p.Cancelled), final
    assert took < 2.0


def test_killing_the_actor_of_a_running_job_is_an_error_and_the_next_job_runs(farm):
    client = farm.client()
    accepted = submit(client, small_splat(100), LONG_JOB)
    msg = client.wait_for(lambda m: isinstance(m, p.Progress) or isinstance(m, p.Error), 90.0)
    assert isinstance(msg, p.Progress), msg
    actor = actor_running(accepted.job_id)
    pid = ray.get(actor.pid.remote(), timeout=10)
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    final = follow(client, accepted.job_id, timeout=CLIENT_TIMEOUT_S + 5)[-1]
    assert isinstance(final[1], p.Error), final
    assert final[1].code == "job_failed" and "actor" in final[1].message, final[1]
    assert final[0] - killed_at < CLIENT_TIMEOUT_S
    after = submit(client, small_splat(90, seed=3), seed=3)
    result = follow(client, after.job_id)[-1][1]
    assert isinstance(result, p.Result), result
    assert result.animation.num_gaussians == 90


def test_previews_stream_through_the_farm(farm):
    """PREVIEW messages come back from the slot actor through the front, to the job's client."""
    client = farm.client()
    accepted = submit(client, small_splat(80, seed=7), {"preset": "test", "preview_every": 1}, seed=7)
    seen = follow(client, accepted.job_id)
    assert isinstance(seen[-1][1], p.Result), seen[-1]
    previews = [m for _, m in seen if isinstance(m, p.Preview)]
    assert previews, [type(m).__name__ for _, m in seen]
    for preview in previews:
        assert preview.job_id == accepted.job_id
        covered = 80 if preview.indices is None else len(preview.indices)
        assert preview.animation.num_gaussians == covered and np.isfinite(preview.animation.delta_position).all()


def test_a_second_front_with_retries_reruns_a_job_whose_actor_died(cluster, farm, tmp_path):
    """Two fronts share the cluster (their actors' names do not collide); with --retries 1 a job whose
    actor is killed runs again on a fresh actor and its client gets the RESULT."""
    second = launch_worker(tmp_path, "--ray", cluster, "--slots", "1", "--cpus-per-slot", "0", "--retries", "1",
                           "--max-gaussians", "4000", subcommand="farm", startup_timeout=120.0)
    try:
        client = second.client()
        accepted = submit(client, small_splat(70, seed=11), OVERLAP_JOB, seed=11)
        msg = client.wait_for(lambda m: isinstance(m, (p.Progress, p.Error)), 90.0)
        assert isinstance(msg, p.Progress), msg
        actor = actor_running(accepted.job_id)
        os.kill(ray.get(actor.pid.remote(), timeout=10), signal.SIGKILL)
        final = follow(client, accepted.job_id)[-1][1]
        assert isinstance(final, p.Result), final
        assert final.animation.num_gaussians == 70
    finally:
        assert second.stop() == 0, second.log_text()[-3000:]


def test_a_killed_farm_front_restarts_on_its_store(cluster, farm, tmp_path):
    """kill -9 of a front mid-job, then a new front on the same state folder and address: the client
    hears worker_restarted for its running job and the finished job's RESULT is replayed on ATTACH."""
    from animus3d_shared.client import WorkerClient

    state = tmp_path / "state"
    front = ("--ray", cluster, "--slots", "1", "--cpus-per-slot", "0", "--max-gaussians", "4000",
             "--state-dir", str(state))
    first = launch_worker(tmp_path, *front, subcommand="farm", startup_timeout=120.0)
    address = f"tcp://127.0.0.1:{first.endpoint.rsplit(':', 1)[1]}"
    client = WorkerClient(address, timeout_s=20.0, heartbeat_interval_s=0.5, token="farm-restart-token-0123")
    try:
        client.connect()
        client.wait_for(is_(p.Welcome), 20.0)
        done = submit(client, small_splat(40, seed=21), seed=21)
        result = follow(client, done.job_id)[-1][1]
        assert isinstance(result, p.Result), result
        running = submit(client, small_splat(40, seed=22), LONG_JOB, seed=22)
        client.wait_for(lambda m: isinstance(m, p.Progress) and m.job_id == running.job_id, 90.0)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        second = launch_worker(tmp_path, *front, bind=address, subcommand="farm", startup_timeout=120.0)
        try:
            lost = client.wait_for(lambda m: isinstance(m, p.Error) and m.job_id == running.job_id, 60.0)
            assert lost.code == "worker_restarted", lost
            client.attach(done.job_id)
            kept = client.wait_for(lambda m: isinstance(m, p.Result) and m.job_id == done.job_id, 30.0)
            np.testing.assert_array_equal(kept.animation.delta_position, result.animation.delta_position)
        finally:
            assert second.stop() == 0, second.log_text()[-3000:]
    finally:
        client.close()
        first.stop(signal.SIGKILL)


def test_ten_clients_with_two_jobs_each_get_their_own_results(farm):
    clients = [farm.client(timeout_s=30.0, token=f"farm-client-{i:02d}-token") for i in range(10)]  # ten users
    jobs = []  # (client, job id, gaussians, seed)
    for i, client in enumerate(clients):
        for k in range(2):
            count, seed = 40 + 7 * i + 3 * k, 100 + 2 * i + k
            jobs.append((client, submit(client, small_splat(count, seed=seed), seed=seed).job_id, count, seed))
    assert len({job_id for _, job_id, _, _ in jobs}) == 20
    results = {}
    for client, job_id, count, seed in jobs:
        final = follow(client, job_id, timeout=300.0)[-1][1]
        assert isinstance(final, p.Result), final
        results[job_id] = (final, count, seed)
    for job_id, (result, count, seed) in results.items():
        assert result.job_id == job_id
        assert result.seed == seed
        assert result.animation.num_gaussians == count
        assert np.isfinite(result.animation.delta_position).all()


def test_an_unreachable_ray_head_is_a_clear_error_not_a_wait():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "animus3d_worker.cli", "farm", "--ray", "127.0.0.1:1",
                           "--bind", "tcp://127.0.0.1:*"], capture_output=True, text=True, timeout=90)
    assert done.returncode == 1
    assert "cannot reach the Ray head at 127.0.0.1:1" in done.stderr, done.stderr[-2000:]
