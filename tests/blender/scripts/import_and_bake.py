"""Import a PLY, bake a hand-made animation, check the bake, export, save/reload, re-bake, clear."""

import os
import sys

import bpy
import numpy as np

from animus3d_shared import ply, samples
from animus3d_shared.deformation import Animation, quat_multiply, quat_normalise
from common import clean_scene, enable_addon, evaluated_splat, finish

work = sys.argv[1]
addon = enable_addon()
clean_scene()
result = {}

splat = samples.make_test_blob(seed=3, count=1500, sh_degree=1)
path = os.path.join(work, "blob.ply")
ply.write_ply(path, splat)

# ---- import through the operator
assert bpy.ops.animus3d.import_ply(filepath=path) == {"FINISHED"}
obj = bpy.context.active_object
mesh = obj.data
result["name"] = obj.name
result["vertices"] = len(mesh.vertices)
result["float_attrs"] = sorted(a.name for a in mesh.attributes if a.data_type == "FLOAT" and a.domain == "POINT")
result["modifier"] = [m.type for m in obj.modifiers]
back = addon.splat_mesh.splat_from_object(obj)
result["roundtrip_exact"] = all(np.array_equal(getattr(back, f), getattr(splat, f)) for f in
                                ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest"))
# ---- Blender's native PLY importer gives a mesh our code accepts
bpy.ops.wm.ply_import(filepath=path)
native = bpy.context.active_object
nat = addon.splat_mesh.splat_from_object(native)
result["native_matches"] = bool(np.allclose(nat.means, splat.means) and np.array_equal(nat.sh_rest, splat.sh_rest)
                                and np.array_equal(nat.quats, splat.quats))
bpy.data.objects.remove(native)
bpy.context.view_layer.objects.active = obj

# ---- bake a hand-made animation
T, N = 5, splat.count
rng = np.random.default_rng(0)
dpos = (rng.normal(size=(T, N, 3)) * 0.05).astype(np.float32)
drot = quat_normalise(rng.normal(size=(T, N, 4)) + np.array([4, 0, 0, 0])).astype(np.float32)
dscale = (rng.normal(size=(T, N, 3)) * 0.1).astype(np.float32)
anim = Animation(dpos, drot, dscale, fps=12.0)
scene = bpy.context.scene
addon.bake.bake_animation(obj, anim, scene, frame_start=1)


def check_frames(obj, label):
    mesh = obj.data
    out = {"frame_attrs": sorted(a.name for a in mesh.attributes if a.name.startswith("animus3d_")),
           "range": [scene.frame_start, scene.frame_end], "fps": scene.render.fps,
           "modifiers": [m.name for m in obj.modifiers], "shape_keys": mesh.shape_keys is not None}
    fcurves = addon.bake.fcurves_of(obj)
    out["fcurves"] = [fc.data_path for fc in fcurves]
    fc = fcurves[0]
    key_ok = all(abs(fc.evaluate(f) - (f - 1 if 1 <= f <= T else -1)) < 1e-6 and
                 abs(fc.evaluate(f + 0.5) - (f - 1 if 1 <= f <= T else -1)) < 1e-6  # constant between frames
                 for f in range(-2, T + 4))
    interp_ok = all(p.interpolation == "CONSTANT" for p in fc.keyframe_points)
    pos_ok, rot_ok, scale_ok = True, True, True
    for f in (1, 3, 5):
        scene.frame_set(f)
        t = f - 1
        pos, q, s = evaluated_splat(obj)
        want_q = quat_normalise(quat_multiply(drot[t], splat.quats))
        pos_ok &= bool(np.allclose(pos, splat.means + dpos[t], atol=1e-5))
        rot_ok &= bool(np.allclose(q, want_q, atol=1e-5))
        scale_ok &= bool(np.allclose(s, splat.log_scales + dscale[t], atol=1e-6))
    scene.frame_set(20)  # outside: the originals
    pos, q, s = evaluated_splat(obj)
    out.update(pos_ok=pos_ok, key_ok=key_ok, interp_ok=interp_ok, rot_ok=rot_ok, scale_ok=scale_ok,
               outside_is_original=bool(np.array_equal(q, splat.quats) and np.array_equal(pos, splat.means)))
    return out


result["bake"] = check_frames(obj, "bake")

# ---- export one PLY per frame
out_dir = os.path.join(work, "seq")
assert bpy.ops.animus3d.export_ply_sequence(directory=out_dir) == {"FINISHED"}
files = sorted(os.listdir(out_dir))
f2 = ply.read_ply(os.path.join(out_dir, files[2]))
result["export"] = {
    "files": files,
    "frame2_ok": bool(np.allclose(f2.means, splat.means + dpos[2], atol=1e-6)
                      and np.allclose(f2.quats, quat_normalise(quat_multiply(drot[2], splat.quats)), atol=1e-5)
                      and np.allclose(f2.log_scales, splat.log_scales + dscale[2], atol=1e-6)
                      and np.array_equal(f2.sh_rest, splat.sh_rest)),
}

# ---- save, reload, check again
blend = os.path.join(work, "baked.blend")
bpy.ops.wm.save_as_mainfile(filepath=blend)
bpy.ops.wm.open_mainfile(filepath=blend)
scene = bpy.context.scene
obj = bpy.data.objects[result["name"]]
result["reloaded"] = check_frames(obj, "reloaded")

# ---- re-animate with another frame count: replaces the previous bake cleanly
T = 3
anim3 = Animation(dpos[:3].copy(), drot[:3].copy(), dscale[:3].copy(), fps=8.0)
addon.bake.bake_animation(obj, anim3, scene, frame_start=1)
mesh = obj.data
result["rebake"] = {
    "frame_attrs": sorted(a.name for a in mesh.attributes if a.name.startswith("animus3d_")),
    "fcurves": [fc.data_path for fc in addon.bake.fcurves_of(obj)],
    "keys": [tuple(p.co) for p in addon.bake.fcurves_of(obj)[0].keyframe_points],
    "range": [scene.frame_start, scene.frame_end],
}

# ---- remove the animation: the original splat comes back
scene.frame_set(2)
assert bpy.ops.animus3d.clear_animation() == {"FINISHED"}
back = addon.splat_mesh.splat_from_object(obj)
result["cleared"] = {
    "attrs": sorted(a.name for a in obj.data.attributes if a.name.startswith("animus3d_")),
    "modifiers": [m.name for m in obj.modifiers],
    "original": all(np.array_equal(getattr(back, f), getattr(splat, f)) for f in ("means", "quats", "log_scales")),
    "standard_rot_original": bool(np.array_equal(
        np.stack([addon.splat_mesh.get_float_attribute(obj.data, f"rot_{c}") for c in range(4)], 1), splat.quats)),
}

# ---- a writer whose unit-cost estimate exceeds every tick's budget still finishes (regression: it
# used to skip every unit once one slow unit on a loaded machine raised the estimate)
import time  # noqa: E402

writer = addon.bake.FrameWriter(obj, anim.num_frames, 1)
writer.prepare()
writer.load(anim)
writer._unit_cost = 1.0  # as if one unit had taken a second
calls = 0
while not writer.done and calls < 100_000:
    writer.step(time.perf_counter() + 0.001)  # 1 ms budgets, far below the estimate
    calls += 1
result["slow_estimate_writer_done"] = bool(writer.done)
finish(result)
