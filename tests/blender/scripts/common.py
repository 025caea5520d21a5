"""Imported by every scenario script (inside a bpy subprocess): enable the add-on, report results."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

import bpy

ADDON = "bl_ext.user_default.animus3d"


def enable_addon():
    """The add-on package, enabled from the installed extension (installed by the session fixture)."""
    if ADDON not in bpy.context.preferences.addons:
        bpy.ops.preferences.addon_enable(module=ADDON)
    return importlib.import_module(ADDON)


def clean_scene() -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)


def run_ticks(addon, until, timeout_s: float, sleep_s: float = 0.01) -> bool:
    """Call the add-on's tick by hand (timers never fire in module mode) until ``until()``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        addon.session.tick()
        if until():
            return True
        time.sleep(sleep_s)
    return False


def finish(result: dict) -> None:
    with open(os.environ["ANIMUS3D_RESULT"], "w") as fh:
        json.dump(result, fh)
    sys.stdout.flush()


def evaluated_splat(obj, frame=None):
    """(positions [N,3], wxyz rotations [N,4], log-scales [N,3]) of ``obj`` as evaluated on scene
    ``frame`` (the current one when None): the mesh the motion modifier outputs, read with the display
    modifier switched off for the moment (it turns points into ellipsoid instances)."""
    import numpy as np

    if frame is not None:
        bpy.context.scene.frame_set(frame)
    display = obj.modifiers.get("Animus3D Display")
    shown = display is not None and display.show_viewport
    if shown:
        display.show_viewport = False
    try:
        data = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
        n = len(data.attributes["position"].data)

        def floats(name):
            out = np.empty(n, np.float32)
            data.attributes[name].data.foreach_get("value", out)
            return out

        pos = np.empty(n * 3, np.float32)
        data.attributes["position"].data.foreach_get("vector", pos)
        return (pos.reshape(n, 3), np.stack([floats(f"rot_{c}") for c in range(4)], 1),
                np.stack([floats(f"scale_{c}") for c in range(3)], 1))
    finally:
        if shown:
            display.show_viewport = True
