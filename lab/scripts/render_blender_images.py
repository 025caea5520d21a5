"""Render the docs' Blender images from a real baked result, in headless Blender (the bpy wheel).

    python lab/scripts/render_blender_images.py --ply assets/sample_character.ply \
        --animation out/demo/animation.npz --out docs/images

Imports the splat and bakes the worker's animation with the add-on's own code (as
``blender_addon/bake_blend.py`` does), then renders with Cycles on the CPU: ``blender_display.png``,
the splat as the add-on displays it (Gaussians mode) beside its Points mode, and
``blender_baked_frames.png``, frames of the baked clip played from the scene's timeline.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "blender_addon"))


def setup_render(bpy, size: tuple[int, int], samples: int) -> None:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.film_transparent = False
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    world = bpy.data.worlds.new("Backdrop")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.05, 0.05, 0.06, 1.0)
    scene.world = world


def aim_camera(bpy, obj, elevation_deg: float = 10.0):
    """An orthographic camera looking at the object's front (−Y) and framing its bounds."""
    from mathutils import Vector

    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    lo = Vector([min(c[i] for c in corners) for i in range(3)])
    hi = Vector([max(c[i] for c in corners) for i in range(3)])
    centre, extent = (lo + hi) / 2, max(hi - lo)
    data = bpy.data.cameras.new("Camera")
    data.type = "ORTHO"
    data.ortho_scale = 1.5 * extent
    cam = bpy.data.objects.new("Camera", data)
    bpy.context.scene.collection.objects.link(cam)
    el = np.radians(elevation_deg)
    cam.location = centre + Vector((0.0, -4 * extent * np.cos(el), 4 * extent * np.sin(el)))
    cam.rotation_euler = (np.pi / 2 - el, 0.0, 0.0)
    bpy.context.scene.camera = cam
    return cam


def render(bpy, path: str) -> np.ndarray:
    scene = bpy.context.scene
    scene.render.filepath = path
    scene.render.image_settings.file_format = "PNG"
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(path)
    w, h = img.size
    px = np.array(img.pixels[:], np.float32).reshape(h, w, 4)[::-1]
    bpy.data.images.remove(img)
    os.remove(path)
    return px


def save_strip(bpy, tiles: list[np.ndarray], path: str) -> None:
    strip = np.concatenate(tiles, axis=1)
    h, w = strip.shape[:2]
    img = bpy.data.images.new("strip", w, h, alpha=True)
    img.pixels.foreach_set(strip[::-1].ravel())
    img.filepath_raw = path
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ply", required=True)
    parser.add_argument("--animation", required=True, help="animation.npz written by the worker")
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--frames", type=int, default=4, help="baked frames shown")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 400))
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args(argv)

    import bpy

    from animus3d_shared.deformation import Animation
    from animus3d_shared.ply import read_ply

    bake_blend = importlib.import_module("bake_blend")
    package = bake_blend.load_addon_package()
    bake = importlib.import_module(f"{package.__name__}.bake")
    display = importlib.import_module(f"{package.__name__}.display")
    ply_io = importlib.import_module(f"{package.__name__}.ply_io")

    splat = read_ply(args.ply)
    with np.load(args.animation, allow_pickle=False) as data:
        animation = Animation(data["delta_position"], data["delta_rotation"], data["delta_scale"], float(data["fps"]))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = 24
    obj = ply_io.import_splat(bpy, bpy.context, splat, Path(args.ply).stem)
    setup_render(bpy, tuple(args.size), args.samples)
    aim_camera(bpy, obj)
    os.makedirs(args.out, exist_ok=True)
    tmp = os.path.join(args.out, "_tile.png")

    tiles = [render(bpy, tmp)]
    display.add_display(bpy, obj, points=True)
    tiles.append(render(bpy, tmp))
    display.add_display(bpy, obj, points=False)
    save_strip(bpy, tiles, os.path.join(args.out, "blender_display.png"))

    bake.bake_animation(obj, animation, scene, frame_start=1)
    baked = int(obj[bake.PROP_FRAMES])
    shown = np.linspace(1, baked, args.frames).round().astype(int)
    tiles = []
    for frame in shown:
        scene.frame_set(int(frame))
        tiles.append(render(bpy, tmp))
    save_strip(bpy, tiles, os.path.join(args.out, "blender_baked_frames.png"))
    print(f"wrote {args.out}/blender_display.png and blender_baked_frames.png (scene frames {list(shown)} "
          f"of {baked} at {scene.render.fps} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
