"""Tick durations while full-size previews of an N-Gaussian splat arrive; argv: WORK N [FRAMES].

A ZeroMQ ROUTER in this process plays the worker's side of the wire with real protocol messages
(WELCOME, ACCEPTED, PROGRESS, PREVIEW, RESULT) so previews arrive at a controlled, high rate; the
add-on's own client, session and tick handle them. The tick is called every 50 ms as the timer
would, and every tick is timed.
"""

import sys
import time

import bpy
import numpy as np
import zmq

from animus3d_shared import protocol as p
from animus3d_shared.deformation import Animation, quat_normalise
from animus3d_shared.samples import make_test_blob
from common import clean_scene, enable_addon, finish

work, n = sys.argv[1], int(sys.argv[2])
frames = int(sys.argv[3]) if len(sys.argv) > 3 else 4
addon = enable_addon()
session = addon.session
clean_scene()
splat = make_test_blob(seed=0, count=n, sh_degree=0)
obj = addon.ply_io.import_splat(bpy, bpy.context, splat, "Big")
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 8, 1.0  # the clip's rate: this measures the writing, not the retiming

router = zmq.Context.instance().socket(zmq.ROUTER)
port = router.bind_to_random_port("tcp://127.0.0.1")
session.SESSION.connect(f"tcp://127.0.0.1:{port}", 10.0)
peer = None


def serve(until_kind, timeout=30.0):
    """Answer the client's requests until one of kind ``until_kind`` arrived."""
    global peer
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.tick()
        if router.poll(10):
            peer, *frames_in = router.recv_multipart()
            msg = p.decode(frames_in)
            if isinstance(msg, p.Hello):
                router.send_multipart([peer, *p.encode(p.Welcome(worker_version="bench", device="cpu", models={},
                                                                  max_gaussians=10_000_000, max_queued_per_client=4))])
            elif isinstance(msg, p.Submit):
                router.send_multipart([peer, *p.encode(p.Accepted(job_id="bench-job", queue_position=0))])
            if type(msg).__name__ == until_kind:
                return msg
    raise TimeoutError(until_kind)


def animation(scale):
    rng = np.random.default_rng(int(scale * 100))
    dpos = (rng.normal(size=(frames, n, 3)) * 0.01 * scale).astype(np.float32)
    drot = np.zeros((frames, n, 4), np.float32)
    drot[..., 0] = 1.0
    drot[..., 1] = 0.01 * scale
    drot = quat_normalise(drot).astype(np.float32)
    dscale = np.full((frames, n, 3), 0.01 * scale, np.float32)
    return Animation(dpos, drot, dscale, 8.0)


serve("Hello")
scene.animus3d.prompt = "bench"
session.SESSION.submit(obj, scene, "bench", "a blob", {"preset": "test"}, 0)
serve("Submit")
session.SESSION.tick_durations.clear()

previews = [p.encode(p.Preview(job_id="bench-job", stage="msd", animation=animation(s))) for s in (1.0, 2.0, 3.0)]
final = animation(4.0)
result_frames = p.encode(p.Result(job_id="bench-job", animation=final, settings={}, seed=0, prompt="bench",
                                  static_prompt="a blob", device="cpu", timings={}, losses={}, loss_history={}))
job = session.SESSION.job
sent = 0
t_start = time.monotonic()
next_send = t_start
while True:
    now = time.monotonic()
    if now >= next_send and sent < 6:
        router.send_multipart([peer, *p.encode(p.Progress(job_id="bench-job", stage="msd", step=sent, total=6,
                                                          losses={}, eta_s=1.0, message=""))])
        router.send_multipart([peer, *previews[sent % 3]])
        sent += 1
        next_send = now + 0.3
    elif sent == 6 and job.phase == "running" and job.pending_preview is None and (job.writer is None or job.writer.done):
        router.send_multipart([peer, *result_frames])
        sent += 1
        t_result = time.monotonic()
    t0 = time.perf_counter()
    session.tick()
    spent = time.perf_counter() - t0
    while router.poll(0):  # answer heartbeats as the real worker does, or a slow run looks like a dead worker
        hb_peer, *hb_frames = router.recv_multipart()
        if isinstance(p.decode(hb_frames), p.Heartbeat):
            router.send_multipart([hb_peer, *p.encode(p.Heartbeat())])
    if job.phase == "done" or now - t_start > 240:
        break
    time.sleep(max(0.0, session.TICK_INTERVAL - spent))
if job.phase != "done":
    raise SystemExit(f"no bake: job phase {job.phase!r}, message {job.message!r}, error {session.SESSION.error!r}")
stats = session.tick_stats()
co = addon.splat_mesh.get_vector_attribute(obj.data, addon.bake.pos_attr(frames - 1), 3)
session.SESSION.close()
router.close(0)
finish({**stats, "previews": job.previews_applied, "baked": job.phase == "done",
        "bake_s": time.monotonic() - t_result if job.phase == "done" else -1.0,
        "final_ok": bool(np.allclose(co.reshape(n, 3), splat.means + final.delta_position[-1], atol=1e-5))})
