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
