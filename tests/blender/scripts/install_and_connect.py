"""Install the extension zip (argv[1]) into a fresh BLENDER_USER_RESOURCES, enable it and connect to
the worker at argv[2] with the add-on's own client; report Blender's version, where ``zmq`` came
from and the worker's WELCOME. Imports nothing of the project outside the installed extension, so it
runs under any bpy (4.2 and 5.0 alike)."""

import importlib
import os
import sys

import bpy

from common import ADDON, finish

zip_path, address = sys.argv[1], sys.argv[2]
installed = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
result = {"blender": list(bpy.app.version), "python": list(sys.version_info[:2]), "install": sorted(installed),
          "enabled": ADDON in bpy.context.preferences.addons}
try:
    import zmq

    result["zmq_file"] = zmq.__file__
    result["zmq_version"] = zmq.pyzmq_version()
    result["zmq_in_user_dir"] = os.path.realpath(zmq.__file__).startswith(os.path.realpath(os.environ["BLENDER_USER_RESOURCES"]))
except ImportError as exc:
    result["zmq_error"] = str(exc)
    finish(result)
    sys.exit(0)

addon = importlib.import_module(ADDON)
prefs = addon.properties.preferences()
prefs.worker_address = address
assert bpy.ops.animus3d.connect() == {"FINISHED"}
session = addon.session.SESSION
import time

deadline = time.monotonic() + 30
while session.welcome is None and not session.error and time.monotonic() < deadline:
    addon.session.tick()
    time.sleep(0.02)
result.update(address=session.address, error=session.error,
              welcome_device=str(getattr(session.welcome, "device", "")) if session.welcome is not None else "")
session.close()
bpy.ops.preferences.addon_disable(module=ADDON)  # runs the add-on's unregister() on this Blender
result["disabled"] = ADDON not in bpy.context.preferences.addons
finish(result)
# bpy 4.2.0 in module mode crashes (SIGSEGV) in its own interpreter-exit path after an extension was
# installed in the same process; the result is written, so leave without that path.
os._exit(0)
