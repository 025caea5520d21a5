"""The splat display: oriented, anisotropic ellipsoids whose opacity blends, and the fast Points mode.

Gaussians mode is read from the depsgraph's instances (one per Gaussian, its matrix the Gaussian's
rotation times Sigmas·exp(scale)); blending from a small Cycles render with a transparent film: pixels
half-covered by faint Gaussians must be neither empty nor opaque. Points mode is read from the
evaluated point cloud where Blender exposes it (4.3+).
"""

import importlib
import os
import sys

import bpy
import numpy as np

from common import ADDON, clean_scene, enable_addon, finish

work = sys.argv[1]
addon = enable_addon()
clean_scene()
result = {"blender": list(bpy.app.version)}
display = addon.display
quat_normalise = importlib.import_module(ADDON + ".animus3d_shared.deformation").quat_normalise

N = 300
rng = np.random.default_rng(3)
log_scales = (rng.normal(size=(N, 3)) * 0.2 - 2.5).astype(np.float32)
log_scales[:, 0] += 1.0  # clearly anisotropic: x e times wider
splat = addon.splat_mesh.GaussianSplat(
    means=(rng.normal(size=(N, 3)) * 0.3).astype(np.float32),
    quats=rng.normal(size=(N, 4)).astype(np.float32) * 2.0,  # not unit: the display normalises
    log_scales=log_scales,
    opacity_logits=np.full(N, -1.0, np.float32),  # faint: sigmoid(-1) ≈ 0.27
    sh_dc=rng.normal(size=(N, 3)).astype(np.float32), sh_rest=np.zeros((N, 0, 3), np.float32))
obj = addon.ply_io.import_splat(bpy, bpy.context, splat, "Blob")
mod = obj.modifiers[display.MODIFIER_NAME]
result["points_mode_default"] = bool(mod[display.socket_id(mod.node_group, display.POINTS)])


def quat_matrix(q):
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


# ---- Gaussians mode: one instance per Gaussian with the Gaussian's frame
deps = bpy.context.evaluated_depsgraph_get()
mats = [np.array(inst.matrix_world) for inst in deps.object_instances
        if inst.is_instance and inst.parent is not None and inst.parent.original == obj]
result["instances"] = len(mats)
if mats:
    got = np.stack(mats)
    order = [int(np.argmin(np.linalg.norm(got[:, :3, 3] - m, axis=1))) for m in splat.means]
    got = got[order]
    want = np.stack([quat_matrix(q) @ np.diag(display.DEFAULT_SIGMAS * np.exp(s))
                     for q, s in zip(quat_normalise(splat.quats), splat.log_scales)])
    result["centres_err"] = float(np.abs(got[:, :3, 3] - splat.means).max())
    result["frames_err"] = float(np.abs(got[:, :3, :3] - want).max() / np.abs(want).max())
    axes = np.linalg.norm(got[:, :3, :3], axis=1)  # column lengths: the ellipsoid's semi-axes
    result["anisotropic"] = bool(np.median(axes[:, 0] / axes[:, 1]) > 2.0)

# ---- blending, seen by Cycles on a transparent film
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 16
scene.render.film_transparent = True
scene.render.resolution_x = scene.render.resolution_y = 48
cam_data = bpy.data.cameras.new("cam")
cam_data.type = "ORTHO"
cam_data.ortho_scale = 3.0 * float(np.abs(splat.means).max() + np.exp(splat.log_scales).max() * 3)
cam = bpy.data.objects.new("cam", cam_data)
scene.collection.objects.link(cam)
cam.location = (0.0, -10.0, 0.0)
cam.rotation_euler = (np.pi / 2, 0.0, 0.0)
scene.camera = cam


def render_alpha(name: str) -> np.ndarray:
    scene.render.filepath = os.path.join(work, name)
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(scene.render.filepath + ".png")
    px = np.array(img.pixels[:], np.float32).reshape(-1, 4)
    bpy.data.images.remove(img)
    return px


px = render_alpha("gaussians")
alpha = px[:, 3]
covered = alpha > 0.02
result["covered"] = int(covered.sum())
result["partial"] = int(((alpha > 0.05) & (alpha < 0.9)).sum())
result["max_alpha"] = float(alpha.max())
result["coloured"] = bool(px[covered, :3].max() > 0.05)

# ---- Points mode: the fast display, one point per Gaussian, radius exp(max scale)
display.add_display(bpy, obj, points=True)
ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
geometry = ev.evaluated_geometry() if hasattr(ev, "evaluated_geometry") else None
if geometry is not None and geometry.pointcloud is not None:
    pc = geometry.pointcloud
    radius = np.empty(len(pc.points), np.float32)
    pc.attributes["radius"].data.foreach_get("value", radius)
    result["points"] = len(pc.points)
    result["points_radius_ok"] = bool(np.allclose(radius, np.exp(splat.log_scales.max(1)), rtol=1e-5))
result["points_alpha_max"] = float(render_alpha("points")[:, 3].max())
finish(result)
os._exit(0)  # Blender 4.2 can crash tearing Cycles down at interpreter exit; the result is written
