import bpy
from common import ADDON, finish
enabled_before = ADDON in bpy.context.preferences.addons
from common import enable_addon
addon = enable_addon()
finish({"enabled_before": enabled_before, "ops": dir(bpy.ops.animus3d), "file": addon.__file__})
