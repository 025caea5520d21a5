"""Animus3D for Blender: animate a Gaussian splat from a text prompt.

Registering installs the panel, operators, a timer running :func:`session.tick`, and handlers:
``load_post`` (re-attaches to the job a reopened file was waiting for) and ``undo_post`` /
``redo_post`` (the frame writer starts again on the restored data). A baked animation needs no
handler: it is the object's Action and a Geometry Nodes modifier (:mod:`.motion`), so it plays
with the add-on disabled. Unregistering removes all of them, closes the worker connection and
stops a worker started from Blender.
"""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import keys, local_worker, operators, panel, properties, session

_MODULES = (properties, operators, panel)


@persistent
def _on_load_post(*_args) -> None:
    reattach()


@persistent
def _on_undo(*_args) -> None:
    job = session.SESSION.job
    if job is not None:
        job.writer = None


def reattach() -> bool:
    """Follow the job stored in an opened file's scene, if any. Returns True when attaching."""
    for scene in bpy.data.scenes:
        props = getattr(scene, "animus3d", None)
        if props is None or not props.job_id:
            continue
        prefs = properties.preferences()
        try:
            session.SESSION.connect(session.SESSION.address or prefs.worker_address, prefs.heartbeat_timeout_s,
                                    keys.from_preferences(prefs))
            session.SESSION.attach(props.job_id, props.job_object, scene.name)
        except Exception as exc:  # noqa: BLE001 - shown in the panel; loading a file must not fail
            session.SESSION.error = f"cannot re-attach to job {props.job_id}: {exc}"
            return False
        return True
    return False


_HANDLERS = (
    (bpy.app.handlers.load_post, _on_load_post),
    (bpy.app.handlers.undo_post, _on_undo),
    (bpy.app.handlers.redo_post, _on_undo),
)


def register() -> None:
    for module in _MODULES:
        module.register()
    for handlers, fn in _HANDLERS:
        if fn not in handlers:
            handlers.append(fn)
    if not bpy.app.timers.is_registered(session.tick):
        bpy.app.timers.register(session.tick, first_interval=session.TICK_INTERVAL, persistent=True)


def unregister() -> None:
    if bpy.app.timers.is_registered(session.tick):
        bpy.app.timers.unregister(session.tick)
    for handlers, fn in _HANDLERS:
        while fn in handlers:
            handlers.remove(fn)
    session.SESSION.close()
    local_worker.stop_and_wait()
    for module in reversed(_MODULES):
        module.unregister()
