"""An artist's session against a real worker; argv: WORK DEAD_ADDRESS WORKER_ADDRESS.

Checks: only the product presets are offered; an address changed in the preferences is used by the
next Animate without pressing Connect; deleting the object mid-job cancels the job on the worker and
clears the scene's job record; asynchronous outcomes reach the report list; Export needs a baked
object; a splat whose attributes sit on the face domain is refused with a clear error.
"""

import sys
import time

import bpy
import numpy as np

from animus3d_shared import samples
from common import clean_scene, enable_addon, finish, run_ticks

work, dead_address, address = sys.argv[1], sys.argv[2], sys.argv[3]
addon = enable_addon()
SESSION = addon.session.SESSION
prefs = addon.properties.preferences()
prefs.heartbeat_timeout_s = 5.0
clean_scene()
result = {}
scene = bpy.context.scene
props = scene.animus3d
result["presets"] = [item.identifier for item in props.bl_rna.properties["preset"].enum_items]
result["panels"] = {name: getattr(getattr(bpy.types, name, None), "bl_parent_id", None)
                    for name in ("ANIMUS3D_PT_panel", "ANIMUS3D_PT_worker", "ANIMUS3D_PT_advanced")
                    if hasattr(bpy.types, name)}
clips = {}  # the clip length the panel states and the frames it sends, per preset, for 7 frames asked
for preset in ("draft", "standard", "high"):
    props.preset, props.frames = preset, 7
    clips[preset] = [props.clip_frames(), props.job_settings()["frames"]]
props.preset, props.frames = "standard", 0
clips["standard_default"] = [props.clip_frames(), "frames" in props.job_settings()]
result["clips"] = clips

# Blender's "Allow Online Access": a remote worker needs it, a loopback one does not.
system = bpy.context.preferences.system
online = {}


def connect_outcome() -> list:
    try:
        return sorted(bpy.ops.animus3d.connect())
    except RuntimeError:  # an operator that reports an error raises when called from Python
        return ["CANCELLED"]


for allowed in (False, True):
    system.use_online_access = allowed
    prefs.worker_address = "tcp://192.0.2.7:5555"  # TEST-NET-1: never answers, connecting is lazy
    online[f"remote_{allowed}"] = connect_outcome()
    online[f"remote_{allowed}_error"] = addon.session.offline_refusal(prefs.worker_address)
    prefs.worker_address = dead_address
    online[f"loopback_{allowed}"] = connect_outcome()
result["online"] = online
system.use_online_access = False  # as bpy starts; the rest of the session talks to loopback workers

obj = addon.ply_io.import_splat(bpy, bpy.context, samples.make_test_blob(seed=1, count=400, sh_degree=0), "Blob")
result["export_poll_unbaked"] = bpy.ops.animus3d.export_ply_sequence.poll()

# Connect to an address nobody serves, then change the preferences: the next Animate must use the new one.
prefs.worker_address = dead_address
assert bpy.ops.animus3d.connect() == {"FINISHED"}
prefs.worker_address = address
props.prompt = "the blob bounces"
props.preset_override = "test"
props.use_advanced, props.guide_steps, props.lora_steps, props.msd_steps = True, 0, 2, 20000  # a long job
assert bpy.ops.animus3d.animate() == {"FINISHED"}
job = SESSION.job
result["submitted_to"] = SESSION.address
run_ticks(addon, lambda: job.stage == "msd" or not job.active, 120)
result["running_stage"] = job.stage
result["scene_job_id_before"] = props.job_id

# Delete the object mid-job.
bpy.data.objects.remove(obj)
run_ticks(addon, lambda: not job.active, 10)
result["phase_after_delete"] = job.phase
result["scene_job_id_after"] = props.job_id
# The worker must stop: its status shows no running job within a few seconds.
SESSION.status = None
deadline = time.monotonic() + 30
idle = False
while time.monotonic() < deadline and not idle:
    SESSION.request_status()
    run_ticks(addon, lambda: SESSION.status is not None, 5)
    idle = SESSION.status is not None and not getattr(SESSION.status, "running", None)
    SESSION.status = None
    time.sleep(0.2)
result["worker_idle_after_delete"] = idle
result["reports"] = [list(r) for r in SESSION.reports]

# A mesh whose 3DGS attributes live on faces passes no poll and gives a clear error.
mesh = bpy.data.meshes.new("Faces")
mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
for name in addon.splat_mesh.REQUIRED:
    mesh.attributes.new(name, "FLOAT", "FACE")
face_obj = bpy.data.objects.new("Faces", mesh)
scene.collection.objects.link(face_obj)
result["face_domain_is_splat"] = addon.splat_mesh.is_splat_mesh(face_obj)
try:
    addon.splat_mesh.splat_from_object(face_obj)
    result["face_domain_error"] = ""
except addon.splat_mesh.SplatMeshError as exc:
    result["face_domain_error"] = str(exc)

# Retiming a clip of 5 frames at 8 fps to 24 fps: 13 frames, linear motion sampled exactly.
Animation = addon.session.Animation
T, N = 5, 3
dpos = np.zeros((T, N, 3), np.float32)
dpos[:, :, 0] = np.arange(T, dtype=np.float32)[:, None] * 0.3
rot = np.zeros((T, N, 4), np.float32)
rot[..., 0] = 1.0
clip = Animation(dpos, rot, np.zeros((T, N, 3), np.float32), 8.0)
out = addon.retime.retime(clip, 24.0).animation()
expected = np.arange(out.num_frames, dtype=np.float32) * 0.1
result["retime"] = {"frames": out.num_frames, "fps": out.fps,
                    "exact": bool(np.allclose(out.delta_position[:, 0, 0], expected, atol=1e-6)),
                    "keeps_clip_frames": bool(np.allclose(out.delta_position[::3], dpos, atol=1e-6))}

SESSION.close()
finish(result)
