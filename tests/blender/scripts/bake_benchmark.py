"""Time `bake.bake_animation` of a T-frame result for N Gaussians; argv: N T."""

import sys
import time

import bpy
import numpy as np

from animus3d_shared.deformation import Animation, quat_normalise
from animus3d_shared.samples import make_test_blob
from common import clean_scene, enable_addon, evaluated_splat, finish

n, frames = int(sys.argv[1]), int(sys.argv[2])
addon = enable_addon()
clean_scene()
splat = make_test_blob(seed=0, count=n, sh_degree=0)
t0 = time.perf_counter()
obj = addon.ply_io.import_splat(bpy, bpy.context, splat, "Big")
import_s = time.perf_counter() - t0
rng = np.random.default_rng(0)
dpos = (rng.normal(size=(frames, n, 3)) * 0.01).astype(np.float32)
drot = quat_normalise(rng.normal(size=(frames, n, 4)).astype(np.float32) * 0.05 + np.array([1, 0, 0, 0], np.float32)).astype(np.float32)
dscale = (rng.normal(size=(frames, n, 3)) * 0.01).astype(np.float32)
anim = Animation(dpos, drot, dscale, 8.0)
t0 = time.perf_counter()
addon.bake.bake_animation(obj, anim, bpy.context.scene)
bake_s = time.perf_counter() - t0
t0 = time.perf_counter()
pos = evaluated_splat(obj, 6)[0]  # clip frame 5: frame change and evaluation of the motion modifier
frame_s = time.perf_counter() - t0
finish({"n": n, "frames": frames, "import_s": import_s, "bake_s": bake_s, "frame_change_s": frame_s,
        "ok": bool(np.allclose(pos, splat.means + dpos[5], atol=1e-6))})
