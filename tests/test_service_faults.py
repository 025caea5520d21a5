"""The defects of issue 27, each against a real worker process (or a real job child process).

1 a wedging job; 2 ownership; 3 restart; 4 undeliverable and unbounded jobs; 5 memory and limits;
6 the smaller items (seeds, logs, SIGTERM, PLY sizes, worker options). Then what a review of the fix
found: time limits of presets that fit no LoRA, an admin's CANCEL told to the owner, admin STATUS,
and the cap on kept results' bytes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from animus3d_shared import protocol as p
from helpers_worker import launch_worker, small_splat, start_worker, worker_command

pytestmark = pytest.mark.timeout(900)
LONG_JOB = {"preset": "test", "msd_steps": 20000, "preview_every": 0}


def is_(*kinds):
    return lambda m: isinstance(m, kinds)


def submit(client, splat, settings=None, prompt="a blob bounces", seed=0):
    client.submit(splat, prompt, settings=settings or {"preset": "test"}, seed=seed)
    return client.wait_for(is_(p.Accepted, p.Error), 30.0)


def outcome(client, job_id, timeout=400.0):
    return client.wait_for(lambda m: isinstance(m, (p.Result, p.Cancelled)) or (
        isinstance(m, p.Error) and m.job_id == job_id) or (isinstance(m, p.Error) and m.code == "unreachable"),
        timeout)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    with start_worker(tmp_path_factory.mktemp("faults"), "--max-gaussians", "4000",
                      "--max-queued-per-client", "2", "--max-job-cost", "100000") as w:
        yield w


ADMIN_TOKEN = "operator-admin-token-0123456789"


@pytest.fixture(scope="module")
def admin_worker(tmp_path_factory):
    directory = tmp_path_factory.mktemp("admin")
    token_file = directory / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    with start_worker(directory, "--max-gaussians", "4000", "--max-queued-per-client", "2",
                      "--admin-token-file", str(token_file)) as w:
        yield w


def huge_splat(count=50, scale=1e20):
    splat = small_splat(count, seed=3)
    means = (np.random.default_rng(0).random((count, 3)) * scale).astype(np.float32)
    return splat.with_arrays(means=means)


# ---- 1: a job that would hang is harmless ----------------------------------------------------------
def test_1e20_splat_finishes_with_a_finite_result_in_the_submitted_frame(worker):
    client = worker.client()
    accepted = submit(client, huge_splat())
    assert isinstance(accepted, p.Accepted), accepted
    final = outcome(client, accepted.job_id)
    assert isinstance(final, p.Result), final
    assert final.animation.num_gaussians == 50
    assert np.isfinite(final.animation.delta_position).all()
    assert np.abs(final.animation.delta_position[0]).max() == 0.0


def test_a_job_that_ignores_cancel_is_killed_and_reported_cancelled_and_the_next_one_runs():
    from animus3d_worker.service.process_runner import ChildSpec, ProcessRunner
    from animus3d_worker.service.runner import JobWork

    runner = ProcessRunner(ChildSpec(target="helpers_jobs:ignore_cancel"), cancel_grace_s=2.0)
    try:
        work = p.Submit(splat=small_splat(20), prompt="x", settings={"preset": "test"})
        runner.start(JobWork("wedged", work, time_limit_s=600))
        events = _poll_until(runner, lambda e: isinstance(e.message, p.Progress), 90)
        first_pid = runner.child_pid
        start = time.monotonic()
        runner.cancel("wedged")
        final = _poll_until(runner, lambda e: e.final, 20)
        took = time.monotonic() - start
        assert isinstance(final.message, p.Cancelled) and final.job_id == "wedged", events
        assert 1.9 <= took < 8.0, took  # the grace period, then the kill
        assert runner.running == set()
        # a time limit ends a job the same way, with timed_out
        runner.start(JobWork("slow", work, time_limit_s=0.5))
        final = _poll_until(runner, lambda e: e.final, 120)
        assert isinstance(final.message, p.Error) and final.message.code == "timed_out", final
        assert runner.child_pid not in (None, first_pid)
    finally:
        runner.close(grace_s=0.1)


def _poll_until(runner, predicate, timeout):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        for event in runner.poll(time.monotonic()):
            seen.append(event)
            if predicate(event):
                return event
        time.sleep(0.02)
    raise AssertionError(f"no matching runner event in {timeout} s; saw {seen}")


def test_cancel_of_a_running_job_answers_within_the_grace_period_and_the_worker_keeps_serving(worker):
    client = worker.client()
    accepted = submit(client, small_splat(60), settings=LONG_JOB)
    assert isinstance(accepted, p.Accepted), accepted
    client.wait_for(lambda m: isinstance(m, p.Progress) and m.stage == "msd", 90.0)
    start = time.monotonic()
    client.cancel(accepted.job_id)
    final = outcome(client, accepted.job_id, 15.0)
    assert isinstance(final, p.Cancelled), final
    assert time.monotonic() - start < 6.0
    again = submit(client, small_splat(40))
    assert isinstance(outcome(client, again.job_id), p.Result)


# ---- 2: ownership ------------------------------------------------------------------------------------
def test_two_clients_cannot_see_read_or_cancel_each_others_jobs(worker):
    alice, mallory = worker.client(token="alice-token-0123456789"), worker.client(token="mallory-token-0123456789")
    accepted = submit(alice, small_splat(60), settings=LONG_JOB, prompt="alice's secret prompt")
    assert isinstance(accepted, p.Accepted)
    mallory.request_status()
    status = mallory.wait_for(is_(p.StatusReply), 10.0)
    assert status.running is None and status.queue == [] and "alice" not in str(status)
    for action in (mallory.attach, mallory.cancel):
        action(accepted.job_id)
        reply = mallory.wait_for(is_(p.Error, p.Attached, p.Cancelled), 10.0)
        assert isinstance(reply, p.Error) and reply.code == "unknown_job", reply
    alice.request_status()
    mine = alice.wait_for(is_(p.StatusReply), 10.0)
    listed = ([mine.running] if mine.running else []) + list(mine.queue)
    assert [j["job_id"] for j in listed] == [accepted.job_id]
    # the job still runs for alice and only alice can stop it
    alice.cancel(accepted.job_id)
    assert isinstance(outcome(alice, accepted.job_id, 15.0), p.Cancelled)


def test_the_queue_limit_is_per_identity_not_per_socket(worker):
    token = "one-process-many-sockets-token"
    sockets = [worker.client(token=token) for _ in range(3)]
    accepted = [submit(c, small_splat(30), settings=LONG_JOB) for c in sockets[:2]]
    assert all(isinstance(a, p.Accepted) for a in accepted), accepted
    third = submit(sockets[2], small_splat(30), settings=LONG_JOB)
    assert isinstance(third, p.Error) and third.code == "queue_full", third
    for client, job in zip(sockets, accepted):
        client.cancel(job.job_id)
        assert isinstance(outcome(client, job.job_id, 15.0), p.Cancelled)


def final_for(client, job_id, timeout):
    """The job's own outcome (RESULT, CANCELLED or ERROR with its id), skipping other messages."""
    return client.wait_for(lambda m: isinstance(m, (p.Result, p.Cancelled, p.Error)) and m.job_id == job_id,
                           timeout)


def listed(status):
    return {j["job_id"] for j in ([status.running] if status.running else []) + list(status.running_jobs)
            + list(status.queue)}


def test_an_admin_cancel_is_told_to_the_owner_as_well_as_to_the_admin(admin_worker):
    owner = admin_worker.client(token="owner-token-0123456789")
    admin = admin_worker.client(token=ADMIN_TOKEN)
    running = submit(owner, small_splat(60), settings=LONG_JOB)
    queued = submit(owner, small_splat(60), settings=LONG_JOB)
    assert isinstance(running, p.Accepted) and isinstance(queued, p.Accepted), (running, queued)
    owner.wait_for(lambda m: isinstance(m, p.Progress) and m.job_id == running.job_id and m.stage == "msd", 90.0)
    for job in (queued, running):  # a queued job ends at once; a running one after its child stops
        admin.cancel(job.job_id)
        assert isinstance(final_for(admin, job.job_id, 15.0), p.Cancelled)
        told = final_for(owner, job.job_id, 15.0)
        assert isinstance(told, p.Cancelled), told
    owner.request_status()
    assert listed(owner.wait_for(is_(p.StatusReply), 10.0)) == set()


def test_admin_status_lists_every_clients_jobs_and_a_client_only_its_own(admin_worker):
    alice = admin_worker.client(token="alice-status-token-0123456789")
    bob = admin_worker.client(token="bob-status-token-0123456789")
    admin = admin_worker.client(token=ADMIN_TOKEN)
    a = submit(alice, small_splat(60), settings=LONG_JOB, prompt="alice's job")
    b = submit(bob, small_splat(60), settings=LONG_JOB, prompt="bob's job")
    assert isinstance(a, p.Accepted) and isinstance(b, p.Accepted), (a, b)
    try:
        replies = {}
        for name, client in (("alice", alice), ("bob", bob), ("admin", admin)):
            client.request_status()
            replies[name] = client.wait_for(is_(p.StatusReply), 10.0)
        assert listed(replies["alice"]) == {a.job_id} and "bob" not in str(replies["alice"])
        assert listed(replies["bob"]) == {b.job_id} and "alice" not in str(replies["bob"])
        assert {a.job_id, b.job_id} <= listed(replies["admin"])  # (and any other client's)
    finally:
        for client, job in ((bob, b), (alice, a)):
            client.cancel(job.job_id)
            assert isinstance(final_for(client, job.job_id, 15.0), p.Cancelled)


def test_the_time_limit_counts_only_the_stages_a_job_runs():
    from animus3d_shared.settings import JobSettings
    from animus3d_worker.service.runner import job_cost, job_time_limit

    cap = 6 * 3600.0

    def limit(settings):
        return job_time_limit(settings.to_dict(), cap, 5.0, 900.0)

    standard, paper = JobSettings.from_preset("standard"), JobSettings.from_preset("paper")
    assert limit(standard) < cap / 3  # a bound from its own guide and refinement, not the cap
    assert limit(paper) > limit(standard) and limit(paper) == cap  # the paper's hours reach the cap
    # standard fits no LoRA (no MSD): its lora_* settings cost nothing; the guide stage does
    more_lora = JobSettings.from_preset("standard", lora_steps=100_000, lora_batch=64)
    assert job_cost(more_lora.to_dict()) == job_cost(standard.to_dict())
    longer_guide = JobSettings.from_preset("standard", guide_steps=2000)
    assert job_cost(longer_guide.to_dict()) > job_cost(standard.to_dict())
    assert job_cost(JobSettings.from_preset("standard", guide_steps=0).to_dict()) < job_cost(standard.to_dict())
    # a preset that trains a LoRA pays for it
    msd = JobSettings.from_preset("msd")
    assert job_cost(JobSettings.from_preset("msd", lora_steps=600).to_dict()) > job_cost(msd.to_dict())


def test_past_the_result_byte_cap_the_oldest_result_is_forgotten_and_attach_says_unknown_job(tmp_path):
    # a test-preset RESULT of 500 Gaussians is 8 frames x 500 x 40 bytes = 160 kB of arrays plus a
    # header of a few kB: one fits under 240 kB, two do not
    with start_worker(tmp_path, "--max-result-bytes", "240000", "--result-ttl", "3600") as worker:
        client = worker.client(token="result-cap-token-0123456789")
        first = submit(client, small_splat(500, seed=1))
        assert isinstance(first, p.Accepted), first
        assert isinstance(final_for(client, first.job_id, 400.0), p.Result)
        second = submit(client, small_splat(500, seed=2))
        assert isinstance(second, p.Accepted), second
        kept = final_for(client, second.job_id, 400.0)
        assert isinstance(kept, p.Result)
        deadline = time.monotonic() + 20.0  # kept results are trimmed every 5 s
        while True:
            client.attach(first.job_id)
            reply = client.wait_for(lambda m: isinstance(m, (p.Attached, p.Error)) and m.job_id == first.job_id, 10.0)
            if isinstance(reply, p.Error):
                break
            assert isinstance(final_for(client, first.job_id, 10.0), p.Result)  # still kept: replayed
            assert time.monotonic() < deadline, "the older result was never evicted"
            time.sleep(1.0)
        assert reply.code == "unknown_job", reply
        client.attach(second.job_id)
        assert isinstance(client.wait_for(is_(p.Attached), 10.0), p.Attached)
        again = final_for(client, second.job_id, 10.0)
        assert isinstance(again, p.Result)
        np.testing.assert_array_equal(again.animation.delta_position, kept.animation.delta_position)


# ---- 4 and 5: admission ------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, code", [
    ({"preset": "test", "frames": 72, "refine_frame_multiplier": 4}, "too_large"),
    ({"preset": "paper", "msd_steps": 100_000, "resolution": 1024}, "too_costly"),
])
def test_jobs_that_cannot_be_delivered_or_cost_too_much_are_refused_at_submit(worker, settings, code):
    client = worker.client()
    reply = submit(client, small_splat(30), settings=settings)
    assert isinstance(reply, p.Error) and reply.code == code, reply


def test_an_oversized_frame_is_dropped_before_it_costs_memory(worker):
    def rss_kb():
        with open(f"/proc/{worker.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

    before = rss_kb()
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(worker.endpoint)
    sock.send_multipart([b"\x81\xa1v\x02", b"\0" * (64 << 20)])  # 64 MiB, far over 4000 Gaussians' ceiling
    time.sleep(1.0)
    sock.close(0)
    assert rss_kb() - before < 32 << 10
    client = worker.client()
    client.request_status()
    assert isinstance(client.wait_for(is_(p.StatusReply), 10.0), p.StatusReply)


# ---- 6: the smaller items ----------------------------------------------------------------------------
def test_negative_seed_is_refused_and_user_text_is_escaped_in_the_log(worker):
    client = worker.client()
    reply = submit(client, small_splat(20), seed=-1)
    assert isinstance(reply, p.Error) and reply.code == "bad_field" and "seed" in reply.message
    forged = "wave\n2026-12-05T00:00:00Z INFO animus3d.service event=forged\x1b[2J\x00"
    accepted = submit(client, small_splat(20), prompt=forged)
    assert isinstance(accepted, p.Accepted), accepted
    assert isinstance(outcome(client, accepted.job_id), p.Result)
    log = worker.log_text()
    assert "\x1b" not in log and "\x00" not in log
    assert not any(line.startswith("2026-12-05T00:00:00Z") for line in log.splitlines())
    assert "event=forged" in log  # still there, escaped inside the prompt's quoted value


@pytest.mark.parametrize("option", [["--max-gaussians", "1e17"], ["--max-gaussians", "100000000000000000"],
                                    ["--result-ttl", "nan"], ["--device", "gpu9"], ["--device", "cuda:9"],
                                    ["--max-queued-per-client", "0"]])
def test_bad_worker_options_fail_with_one_line(option, tmp_path):
    out = subprocess.run(worker_command("--bind", "tcp://127.0.0.1:*", "--state-dir", str(tmp_path), *option),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr and "listening" not in out.stdout
    assert out.stderr.strip() and option[0] in out.stderr or "device" in out.stderr


def test_failed_curve_handshake_is_logged_with_the_peer_address(tmp_path):
    from animus3d_shared.client import WorkerClient
    from animus3d_worker.service.security import generate_keys, load_client_keys, load_public_key

    keys = tmp_path / "keys"
    generate_keys(keys, "artist")
    generate_keys(tmp_path / "stranger", "mallory")
    with start_worker(tmp_path / "w", "--keys", str(keys)) as worker:
        public, secret = load_client_keys(tmp_path / "stranger" / "clients" / "mallory.key_secret")
        stranger = WorkerClient(worker.endpoint, curve_server_public=load_public_key(keys / "server.key"),
                                curve_client_public=public, curve_client_secret=secret, timeout_s=1.0)
        stranger.connect()
        deadline = time.monotonic() + 20
        while "auth refused" not in worker.log_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        stranger.close()
        line = next(line for line in worker.log_text().splitlines() if "auth refused" in line)
        assert "peer=127.0.0.1" in line


# ---- 3: restart --------------------------------------------------------------------------------------
def test_kill_9_and_restart_reports_worker_restarted_keeps_results_and_the_client_notices(tmp_path):
    state = tmp_path / "state"
    first = launch_worker(tmp_path, "--state-dir", str(state))
    port = first.endpoint.rsplit(":", 1)[1]
    address = f"tcp://127.0.0.1:{port}"
    from animus3d_shared.client import WorkerClient

    client = WorkerClient(address, timeout_s=20.0, heartbeat_interval_s=0.5, token="restart-test-token-0123")
    try:
        client.connect()
        client.wait_for(is_(p.Welcome), 20.0)
        done = submit(client, small_splat(40))
        result = outcome(client, done.job_id)
        assert isinstance(result, p.Result)
        running = submit(client, small_splat(40), settings=LONG_JOB)
        # this job's own progress: the finished job's late PROGRESS messages are still queued here
        client.wait_for(lambda m: isinstance(m, p.Progress) and m.job_id == running.job_id and m.stage == "msd",
                        90.0)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        second = launch_worker(tmp_path, "--state-dir", str(state), bind=address)
        try:
            noticed = client.wait_for(lambda m: isinstance(m, p.Error) and m.code == "worker_restarted"
                                      and m.job_id is None, 30.0)
            assert "restarted" in noticed.message
            lost = outcome(client, running.job_id, 30.0)
            assert isinstance(lost, p.Error) and lost.code == "worker_restarted", lost
            client.attach(done.job_id)
            kept = client.wait_for(is_(p.Result), 20.0)
            np.testing.assert_array_equal(kept.animation.delta_position, result.animation.delta_position)
        finally:
            client.close()
            second.stop()
    finally:
        first.stop(signal.SIGKILL)


# ---- PLY edge cases through the CLI -------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 1])
def test_animate_local_with_a_0_or_1_gaussian_ply_is_one_clear_line(tmp_path, count):
    from animus3d_shared.ply import write_ply

    path = tmp_path / "tiny.ply"
    splat = small_splat(2)
    if count == 0:
        write_ply(path, splat)  # then rewrite the header to 0 vertices below
        data = path.read_bytes()
        header_end = data.index(b"end_header\n") + len(b"end_header\n")
        path.write_bytes(data[:header_end].replace(b"element vertex 2", b"element vertex 0"))
    else:
        write_ply(path, splat.subset(np.array([0])))
    out = subprocess.run([sys.executable, "-m", "animus3d_worker.cli", "animate", str(path), "--prompt", "spin",
                          "--local", "--device", "cpu", "--preset", "test", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=240)
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    if out.returncode != 0:
        assert out.stderr.strip().count("\n") == 0, out.stderr
        assert out.stderr.count(str(path)) <= 1
