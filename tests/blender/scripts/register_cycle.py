"""Enable/disable the add-on twice; nothing may be left behind (timer, handlers, classes, process)."""

import bpy

from common import ADDON, enable_addon, finish

rounds = []
for _ in range(2):
    addon = enable_addon()
    state = {
        "ops": hasattr(bpy.ops.animus3d, "animate") and hasattr(bpy.ops.animus3d, "import_ply"),
        "timer": bpy.app.timers.is_registered(addon.session.tick),
        "handlers": sum(fn.__module__.startswith(ADDON) for fn in bpy.app.handlers.load_post)
        + sum(fn.__module__.startswith(ADDON) for fn in bpy.app.handlers.undo_post),
        "frame_change_handlers": sum(fn.__module__.startswith(ADDON) for fn in bpy.app.handlers.frame_change_post),
        "scene_props": hasattr(bpy.context.scene, "animus3d"),
        "tick_interval": addon.session.tick(),
    }
    # a connection (to nothing) and a "local worker" process must both be closed by unregister
    addon.session.SESSION.connect("tcp://127.0.0.1:9", 2.0)
    proc = addon.local_worker.start("sleep 60", addon.operators.worker_state_dir())
    bpy.ops.preferences.addon_disable(module=ADDON)
    state.update(
        after_timer=bpy.app.timers.is_registered(addon.session.tick),
        after_handlers=sum(getattr(fn, "__module__", "").startswith(ADDON) for h in
                           (bpy.app.handlers.frame_change_post, bpy.app.handlers.load_post,
                            bpy.app.handlers.undo_post) for fn in h),
        after_panel=hasattr(bpy.types, "ANIMUS3D_PT_panel"),
        after_scene_props=hasattr(bpy.context.scene, "animus3d"),
        after_client=addon.session.SESSION.client is None,
        after_process_exited=proc.poll() is not None,
    )
    rounds.append(state)
finish({"rounds": rounds})
