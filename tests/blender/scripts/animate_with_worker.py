"""`animus3d.animate` against a real worker; argv: WORK ADDRESS MODE [WORKER_PID].

MODE: complete (bake, check, save, reload), reattach (close the connection, reopen the .blend,
the load_post handler re-attaches), cancel (cancel mid-job), kill (kill the worker mid-job).
"""

import os
import signal
import sys
import time

import bpy
import numpy as np

from animus3d_shared import samples
from animus3d_shared.deformation import quat_multiply, quat_normalise
from common import clean_scene, enable_addon, evaluated_splat, finish, run_ticks

work, address, mode = sys.argv[1], sys.argv[2], sys.argv[3]
worker_pid = int(sys.argv[4]) if len(sys.argv) > 4 else None
addon = enable_addon()
session = addon.session
prefs = addon.properties.preferences()
prefs.worker_address = address
prefs.heartbeat_timeout_s = 3.0
clean_scene()
result = {"mode": mode}

splat = samples.make_test_blob(seed=1, count=800, sh_degree=0)
obj = addon.ply_io.import_splat(bpy, bpy.context, splat, "Blob")
scene = bpy.context.scene
props = scene.animus3d
props.prompt = "the blob bounces up and down"
props.preset_override = "test"  # smoke-run preset; artists see draft/standard/high
props.seed = 7
if mode in ("cancel", "kill"):  # a long MSD stage, so the job is surely running when we act
    props.use_advanced = True
    props.guide_steps = 0
    props.lora_steps = 2
    props.msd_steps = 20000
scene.render.fps, scene.render.fps_base = 24, 1.0
scene.frame_start, scene.frame_end = 1, 250
scene.frame_set(11)  # the bake starts on the current frame and keeps the scene's fps and range
assert bpy.ops.animus3d.animate() == {"FINISHED"}
result["static_prompt"] = props.static_prompt
job = session.SESSION.job


def finished():
    return job.phase in ("done", "failed", "cancelled")


def running_with_id():
    return bool(job.job_id) and (job.stage != "" or job.phase == "running") or finished()


run_ticks(addon, lambda: session.SESSION.welcome is not None and bool(job.job_id) or finished(), 60)
result["accepted"] = bool(job.job_id)
result["scene_job_id"] = props.job_id
result["object_job_id"] = obj.get("animus3d_job_id", "")
result["welcome_device"] = str(getattr(session.SESSION.welcome, "device", ""))



def leftovers():
    """What of a job's data is on the object: bake-looking state, preview data, panel operators."""
    return {"baked_frames": addon.bake.baked_frames(obj), "preview_frames": addon.bake.preview_frames(obj),
            "frame_attrs": sorted(a.name for a in obj.data.attributes if a.name.startswith("animus3d_")),
            "fcurves": [fc.data_path for fc in (addon.bake.fcurves_of(obj) or ())],
            "export_poll": bpy.ops.animus3d.export_ply_sequence.poll(),
            "remove_poll": bpy.ops.animus3d.clear_animation.poll()}


if mode == "cancel":
    # a preview is on the object (the MSD stage previews its first step) before cancelling
    run_ticks(addon, lambda: (job.stage == "msd" and job.previews_applied >= 1 and job.writer is not None
                              and job.writer.done) or finished(), 180)
    result["during"] = leftovers()
    assert bpy.ops.animus3d.cancel() == {"FINISHED"}
    t0 = time.monotonic()
    run_ticks(addon, finished, 60)
    result.update(phase=job.phase, cancel_s=time.monotonic() - t0, scene_job_id_after=props.job_id, error=job.error,
                  after=leftovers(), original_shown=bool(np.array_equal(evaluated_splat(obj, 12)[0], splat.means)))
elif mode == "kill":
    run_ticks(addon, lambda: (job.stage == "msd" and job.previews_applied >= 1 and job.writer is not None
                              and job.writer.done) or finished(), 180)
    result["during"] = leftovers()
    os.kill(worker_pid, signal.SIGKILL)
    t0 = time.monotonic()
    run_ticks(addon, finished, 30)
    result.update(phase=job.phase, error=job.error, session_error=session.SESSION.error,
                  detect_s=time.monotonic() - t0, max_tick_s=max(session.SESSION.tick_durations), after=leftovers())
else:
    if mode == "reattach":
        bpy.ops.wm.save_as_mainfile(filepath=os.path.join(work, "pending.blend"))
        session.SESSION.close()  # as if Blender quit
        bpy.ops.wm.open_mainfile(filepath=os.path.join(work, "pending.blend"))
        scene = bpy.context.scene
        job = session.SESSION.job
        result["reattached"] = job is not None and job.job_id == result["scene_job_id"]
        obj = bpy.data.objects["Blob"]
    ok = run_ticks(addon, lambda: job.phase in ("done", "failed", "cancelled"), 300)
    result.update(phase=job.phase, error=job.error, previews=job.previews_applied, stats=session.tick_stats(),
                  read_as=job.read_as)
    anim = job.result_animation  # the clip retimed to the scene's fps, every frame at once
    anim = anim.animation() if hasattr(anim, "animation") else anim
    mesh = obj.data
    T = anim.num_frames
    result["frames"] = T
    result["frame_attrs"] = sum(a.name.startswith("animus3d_f") for a in mesh.attributes)
    result["range"] = [scene.frame_start, scene.frame_end]
    result["fps"] = scene.render.fps
    result["clip"] = list(job.clip) if job.clip else None
    result["retimed_frames"] = addon.retime.retimed_frame_count(job.clip[0], job.clip[1], 24) if job.clip else None
    start = int(obj["animus3d_frame_start"])
    result["start"] = start
    fc = addon.bake.fcurves_of(obj).find(addon.motion.input_path(obj, addon.motion.CLIP_FRAME))
    checks = {"pos": True, "keys": True, "rot": True, "scale": True}
    for f in range(scene.frame_start, scene.frame_end + 1):
        checks["keys"] &= abs(fc.evaluate(f) - (f - start if start <= f < start + T else -1.0)) < 1e-6
    checks["keys"] &= all(p.interpolation == "CONSTANT" for p in fc.keyframe_points)
    for t in sorted({0, 1, T // 2, T - 1}):
        pos, q, s = evaluated_splat(obj, start + t)
        checks["pos"] &= bool(np.allclose(pos, splat.means + anim.delta_position[t], atol=1e-5))
        checks["rot"] &= bool(np.allclose(q, quat_normalise(quat_multiply(anim.delta_rotation[t], splat.quats)), atol=1e-5))
        checks["scale"] &= bool(np.allclose(s, splat.log_scales + anim.delta_scale[t], atol=1e-5))
    result["checks"] = checks
    result["motion"] = float(np.abs(anim.delta_position).max())
    # the animation survives save + reload
    blend = os.path.join(work, "animated.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    bpy.ops.wm.open_mainfile(filepath=blend)
    obj = bpy.data.objects["Blob"]
    pos = evaluated_splat(obj, start + T - 1)[0]
    result["reloaded_ok"] = bool(np.allclose(pos, splat.means + anim.delta_position[T - 1], atol=1e-5))
    result["reloaded_job_id"] = bpy.context.scene.animus3d.job_id
addon_module = addon
bpy.ops.preferences.addon_disable(module="bl_ext.user_default.animus3d")
finish(result)
