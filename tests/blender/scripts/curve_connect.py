"""The add-on talks to a worker that requires CURVE keys; argv: ADDRESS SERVER_KEY CLIENT_KEY_SECRET.

A key file that does not exist is a clear error from Connect; without keys the worker does not
answer; with the keys set in the preferences the next Connect gets the worker's WELCOME.
"""

import sys
import time

import bpy

from common import enable_addon, finish, run_ticks

address, server_key, client_key = sys.argv[1:4]
addon = enable_addon()
session = addon.session.SESSION
prefs = addon.properties.preferences()
prefs.worker_address = address
prefs.heartbeat_timeout_s = 2.0
result = {}

prefs.server_key_file, prefs.client_key_file = server_key + ".missing", client_key
try:
    result["missing_file"] = sorted(bpy.ops.animus3d.connect())
except RuntimeError as exc:  # an operator that reports ERROR raises in background mode
    result["missing_file"] = ["CANCELLED"]
    result["missing_file_error"] = str(exc)
result["client_after_missing"] = session.client is None

prefs.server_key_file, prefs.client_key_file = "", ""
assert bpy.ops.animus3d.connect() == {"FINISHED"}
t0 = time.monotonic()
run_ticks(addon, lambda: session.welcome is not None or bool(session.error), 15)
result["plain"] = {"welcome": session.welcome is not None, "error": session.error, "s": time.monotonic() - t0}

prefs.server_key_file, prefs.client_key_file = server_key, client_key
assert bpy.ops.animus3d.connect() == {"FINISHED"}  # same address, new keys: a new connection
run_ticks(addon, lambda: session.welcome is not None or bool(session.error), 30)
result["curve"] = {"welcome": session.welcome is not None, "error": session.error,
                   "device": str(getattr(session.welcome, "device", "")), "encrypted": session.curve is not None}
session.close()
bpy.ops.preferences.addon_disable(module=addon.__name__)
finish(result)
