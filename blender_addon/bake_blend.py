"""Write a .blend with a splat and its animation baked by the add-on's own code, outside Blender's UI.

Run with a Python that has the ``bpy`` wheel and ``animus3d_shared`` installed (the project venv):

    python blender_addon/bake_blend.py --ply splat.ply --animation animation.npz --out demo.blend

Used by ``make demo`` to write ``out/demo/demo.blend``: open it in Blender and press play. The add-on
package is loaded from this folder under a private name, with the installed ``animus3d_shared``
standing in for its vendored copy, so no build or installation is needed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types

PACKAGE = "animus3d_blender_addon"


def load_addon_package():
    """Import this folder as a package whose ``animus3d_shared`` is the installed one."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    import animus3d_shared

    package = types.ModuleType(PACKAGE)
    package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
    package.__package__ = PACKAGE
    sys.modules[PACKAGE] = package
    sys.modules[f"{PACKAGE}.animus3d_shared"] = animus3d_shared
    for name in ("deformation", "splat", "ply", "settings"):
        sys.modules[f"{PACKAGE}.animus3d_shared.{name}"] = importlib.import_module(f"animus3d_shared.{name}")
    return package


def write_blend(splat, animation, out_path: str, name: str = "Splat") -> str:
    """Import ``splat`` into an empty scene, bake ``animation``, save to ``out_path``."""
    import bpy

    load_addon_package()
    bake = importlib.import_module(f"{PACKAGE}.bake")
    ply_io = importlib.import_module(f"{PACKAGE}.ply_io")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = ply_io.import_splat(bpy, bpy.context, splat, name)
    scene = bpy.context.scene
    bake.bake_animation(obj, animation, scene)
    scene.frame_set(scene.frame_start)
    # The motion is keyed data: the file plays in any Blender, with or without the add-on.
    os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(out_path))
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ply", required=True, help="the static splat (3DGS PLY)")
    parser.add_argument("--animation", required=True, help="animation.npz written by the worker")
    parser.add_argument("--out", required=True, help="the .blend to write")
    parser.add_argument("--name", default=None, help="object name (default: the PLY's file name)")
    args = parser.parse_args(argv)
    import numpy as np
    from animus3d_shared.deformation import Animation
    from animus3d_shared.ply import read_ply

    splat = read_ply(args.ply)
    with np.load(args.animation, allow_pickle=False) as data:
        animation = Animation(data["delta_position"], data["delta_rotation"], data["delta_scale"], float(data["fps"]))
    name = args.name or os.path.splitext(os.path.basename(args.ply))[0]
    write_blend(splat, animation, args.out, name)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
