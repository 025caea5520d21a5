"""Install the extension zip (argv[1]) into BLENDER_USER_RESOURCES and report what got registered."""

import importlib
import sys

import bpy

from common import ADDON, finish

zip_path = sys.argv[1]
result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
bpy.ops.wm.save_userpref()
ops = [name for name in dir(bpy.ops.animus3d)]
finish({
    "install": sorted(result),
    "enabled": ADDON in bpy.context.preferences.addons,
    "operators": ops,
    "zmq": __import__("zmq").__file__,
    "panel": hasattr(bpy.types, "ANIMUS3D_PT_panel"),
    "notices": {name: list(importlib.import_module(ADDON + ".panel").prior_notice(models)) for name, models in (
        ("embedded", {"motion_prior": "embedded", "refine_prior": "embedded"}),
        ("tiny", {"motion_prior": "tiny:3", "refine_prior": "tiny:3"}),
        ("real", {"motion_prior": "damo-vilab/text-to-video-ms-1.7b", "refine_prior": "cerspense/zeroscope_v2_576w"}),
        ("none", None))},
})
# bpy 4.2.0 in module mode crashes (SIGSEGV) in its interpreter-exit path after an extension was
# installed in the same process; the result is written, so leave without that path.
__import__("os")._exit(0)
