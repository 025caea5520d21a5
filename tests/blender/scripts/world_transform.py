"""A rotated object is animated as it stands in the scene: the splat goes out turned by the object's
world rotation, and a motion the worker returns in world axes plays in world axes after the bake.

The client is a stand-in that keeps the submitted splat; the RESULT is a hand-made world-frame clip
(a rise along world +Z and a turn about world +Z), fed through the session's tick as a worker's
RESULT would be.
"""

import math
import os
import sys

import bpy
import numpy as np

from animus3d_shared import ply, protocol, samples
from animus3d_shared.deformation import Animation, quat_multiply, quat_normalise
from common import clean_scene, enable_addon, evaluated_splat, finish, run_ticks

work = sys.argv[1]
addon = enable_addon()
clean_scene()

splat = samples.make_test_blob(seed=5, count=400)
path = os.path.join(work, "blob.ply")
ply.write_ply(path, splat)
assert bpy.ops.animus3d.import_ply(filepath=path) == {"FINISHED"}
obj = bpy.context.active_object
parent = bpy.data.objects.new("rig", None)
bpy.context.scene.collection.objects.link(parent)
parent.rotation_euler = (0.0, 0.0, math.radians(30.0))
obj.parent = parent
obj.rotation_euler = (math.radians(90.0), 0.0, 0.0)  # a Y-up capture stood upright
obj.location = (2.0, -1.0, 0.5)
bpy.context.view_layer.update()
world = np.array(obj.matrix_world)


class StandIn:
    connected = True
    sent = None

    def submit(self, splat, prompt, **_):
        StandIn.sent = splat

    def poll(self, **_):
        return []

    def request_status(self):
        pass

    def close(self):
        pass


session = addon.session.SESSION
session.client = StandIn()
scene = bpy.context.scene
scene.frame_set(1)
session.submit(obj, scene, "the blob rises and turns", "", {"preset": "test"}, 0)
sent = StandIn.sent
local = splat.means.astype(np.float64)
rotation = world[:3, :3] / np.linalg.norm(world[:3, :3], axis=0)
result = {"sent_means_err": float(np.abs(sent.means - local @ rotation.T).max())}
r_q = np.array(session.job.rotation)
result["sent_quats_err"] = float(np.abs(quat_normalise(sent.quats)
                                         - quat_normalise(quat_multiply(r_q, splat.quats))).max())

# the worker's answer, in world axes: frame t rises by 0.25 t and turns by 20° t about world +Z
T, N = 3, splat.count
turn = np.array([[math.cos(math.radians(10.0 * t)), 0, 0, math.sin(math.radians(10.0 * t))] for t in range(T)])
dp = np.zeros((T, N, 3), np.float32)
dp[:, :, 2] = 0.25 * np.arange(T)[:, None]
dq = np.repeat(turn[:, None, :], N, axis=1).astype(np.float32)
anim = Animation(dp, dq, np.zeros((T, N, 3), np.float32), fps=float(scene.render.fps))
session.job.job_id = "job-world"
session._handle(protocol.Result(job_id="job-world", animation=anim))
done = run_ticks(addon, lambda: session.job.phase == "done", 30.0)
result["baked"] = bool(done)

errs_pos, errs_rot = [], []
for t in range(T):
    pos, rot, _ = evaluated_splat(obj, 1 + t)
    world_pos = pos.astype(np.float64) @ world[:3, :3].T + world[:3, 3]
    want_pos = local @ world[:3, :3].T + world[:3, 3] + np.array([0.0, 0.0, 0.25 * t])
    errs_pos.append(float(np.abs(world_pos - want_pos).max()))
    world_rot = quat_normalise(quat_multiply(r_q, rot.astype(np.float64)))
    want_rot = quat_normalise(quat_multiply(turn[t], quat_multiply(r_q, splat.quats.astype(np.float64))))
    errs_rot.append(float(np.minimum(np.abs(world_rot - want_rot), np.abs(world_rot + want_rot)).max()))
result["world_pos_err"] = errs_pos
result["world_rot_err"] = errs_rot
result["rotation_prop"] = list(obj.get(addon.session.PROP_JOB_ROTATION, [])) if addon.session.PROP_JOB_ROTATION in obj else None
session.client = None
finish(result)
