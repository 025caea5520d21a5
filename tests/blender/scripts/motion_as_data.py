"""Motion is data: a bake plays from the object's Action through the motion modifier, with no handler.

``motion_as_data.py WORK bake``: with the add-on enabled, bake a hand-made 5-frame clip at frame 11,
check the evaluated positions/rotations/scales on scene frames, shift the Action's keys by +10 (as
in the Dope Sheet) and check again, save WORK/motion.blend, disable the add-on and check again,
then play the Action from an NLA strip. ``motion_as_data.py WORK without``: in a Blender without the
extension, open the file and check; then link the object into an empty file and check. Imports only
the installed extension (not the project), so it runs under bpy 4.2 and 5.0 alike.
"""

import importlib
import os
import sys

import bpy
import numpy as np

from common import ADDON, finish

work, mode = sys.argv[1], sys.argv[2]
blend = os.path.join(work, "motion.blend")
expected_path = os.path.join(work, "motion_expected.npz")
T, N = 5, 700


def read_float(attrs, name, n):
    out = np.empty(n, np.float32)
    attrs[name].data.foreach_get("value", out)
    return out


def evaluated(obj, frame):
    """(positions, wxyz rotations, log-scales) of ``obj``'s evaluated mesh on scene ``frame``."""
    bpy.context.scene.frame_set(frame)
    mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    n = len(mesh.vertices)
    pos = np.empty(n * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", pos)
    rot = np.stack([read_float(mesh.attributes, f"rot_{c}", n) for c in range(4)], 1)
    scale = np.stack([read_float(mesh.attributes, f"scale_{c}", n) for c in range(3)], 1)
    return pos.reshape(n, 3), rot, scale


def check(obj, expected, frames_to_t):
    """True when every scene frame shows clip frame t (−1: the original splat), to float precision."""
    worst = 0.0
    for frame, t in frames_to_t:
        key = "orig" if t < 0 else str(t)
        got = evaluated(obj, frame)
        for g, name in zip(got, ("pos", "rot", "scale")):
            worst = max(worst, float(np.abs(g - expected[f"{name}_{key}"]).max()))
    return {"ok": worst < 1e-5, "worst": worst}


AT_11 = [(10, -1), (11, 0), (12, 1), (13, 2), (15, 4), (16, -1)]
SHIFTED = [(11, -1), (20, -1), (21, 0), (23, 2), (25, 4), (26, -1)]
result = {"blender": list(bpy.app.version)}

if mode == "bake":
    addon = importlib.import_module(ADDON) if ADDON in bpy.context.preferences.addons else None
    if addon is None:
        bpy.ops.preferences.addon_enable(module=ADDON)
        addon = importlib.import_module(ADDON)
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    GaussianSplat = addon.splat_mesh.GaussianSplat
    rng = np.random.default_rng(5)
    quats = rng.normal(size=(N, 4)).astype(np.float32)
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    splat = GaussianSplat(means=rng.normal(size=(N, 3)).astype(np.float32), quats=quats,
                          log_scales=(rng.normal(size=(N, 3)) - 3).astype(np.float32),
                          opacity_logits=rng.normal(size=N).astype(np.float32),
                          sh_dc=rng.normal(size=(N, 3)).astype(np.float32), sh_rest=np.zeros((N, 0, 3), np.float32))
    obj = addon.ply_io.import_splat(bpy, bpy.context, splat, "Clip", display=False)
    dq = rng.normal(size=(T, N, 4)).astype(np.float32) + np.array([3, 0, 0, 0], np.float32)
    dq /= np.linalg.norm(dq, axis=-1, keepdims=True)
    Animation = importlib.import_module(ADDON + ".animus3d_shared.deformation").Animation
    anim = Animation((rng.normal(size=(T, N, 3)) * 0.1).astype(np.float32), dq,
                     (rng.normal(size=(T, N, 3)) * 0.1).astype(np.float32), fps=24.0)
    expected = {"pos_orig": splat.means, "rot_orig": splat.quats, "scale_orig": splat.log_scales}
    for t in range(T):
        expected[f"pos_{t}"] = splat.means + anim.delta_position[t]
        expected[f"rot_{t}"] = addon.bake.quat_compose(anim.delta_rotation[t], splat.quats)
        expected[f"scale_{t}"] = splat.log_scales + anim.delta_scale[t]
    np.savez(expected_path, **expected)
    scene = bpy.context.scene
    scene.frame_set(11)
    addon.bake.bake_animation(obj, anim, None, frame_start=11)
    result["handlers"] = sum(getattr(fn, "__module__", "").startswith(ADDON) for fn in bpy.app.handlers.frame_change_post)
    result["shape_keys"] = obj.data.shape_keys is not None
    result["at_11"] = check(obj, expected, AT_11)
    # the Dope Sheet's "move the keys 10 frames later", on every F-curve of the object's Action
    fcurves = addon.bake.fcurves_of(obj)
    result["fcurves"] = [fc.data_path for fc in fcurves]
    for fc in fcurves:
        for point in fc.keyframe_points:
            for attr in ("co", "handle_left", "handle_right"):
                getattr(point, attr)[0] += 10
        fc.update()
    result["shifted"] = check(obj, expected, SHIFTED)
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    bpy.ops.preferences.addon_disable(module=ADDON)
    result["disabled"] = ADDON not in bpy.context.preferences.addons
    result["shifted_disabled"] = check(obj, expected, SHIFTED)
    # NLA: the Action as a strip starting on frame 100 (the Action's frame 20 falls on 100)
    ad = obj.animation_data
    action = ad.action
    track = ad.nla_tracks.new()
    strip = track.strips.new("clip", 100, action)
    if hasattr(strip, "action_slot") and strip.action_slot is None and hasattr(ad, "action_slot"):
        strip.action_slot = ad.action_slot
    ad.action = None
    result["nla"] = check(obj, expected, [(100, -1), (101, 0), (103, 2), (105, 4), (106, -1)])
else:
    expected = dict(np.load(expected_path))
    result["addon_enabled"] = ADDON in bpy.context.preferences.addons
    bpy.ops.wm.open_mainfile(filepath=blend)
    result["opened"] = check(bpy.data.objects["Clip"], expected, SHIFTED)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    with bpy.data.libraries.load(blend, link=True) as (src, dst):
        dst.objects = ["Clip"]
    linked = dst.objects[0]
    bpy.context.scene.collection.objects.link(linked)
    result["linked_library"] = linked.library is not None
    result["linked"] = check(linked, expected, SHIFTED)
finish(result)
os._exit(0)  # bpy 4.2.0 can crash in its interpreter-exit path; the result is written
