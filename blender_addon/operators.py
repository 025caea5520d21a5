"""Operators: import/export, connect, local worker, animate, cancel, clear."""

from __future__ import annotations

import os
import tempfile

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ImportHelper

from . import bake, keys, local_worker, ply_io
from .animus3d_shared.splat import SplatError
from .properties import derive_static_prompt, preferences
from .session import SESSION
from .splat_mesh import SplatMeshError, is_splat_mesh

LOG_SHOWN_BYTES = 200_000  # the end of a long log


class ANIMUS3D_OT_import_ply(bpy.types.Operator, ImportHelper):
    """Import a 3D Gaussian Splat PLY as a mesh with one vertex per Gaussian"""

    bl_idname = "animus3d.import_ply"
    bl_label = "Import Gaussian Splat"
    bl_options = {"REGISTER", "UNDO"}
    filename_ext = ".ply"
    filter_glob: StringProperty(default="*.ply", options={"HIDDEN"})

    def execute(self, context):
        try:
            obj = ply_io.import_ply_file(bpy, context, self.filepath)
        except (SplatError, OSError) as exc:
            self.report({"ERROR"}, f"Cannot import {self.filepath}: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Imported {len(obj.data.vertices)} Gaussians as {obj.name!r}")
        return {"FINISHED"}


class ANIMUS3D_OT_export_ply_sequence(bpy.types.Operator):
    """Write one full 3DGS PLY per baked frame of the active object"""

    bl_idname = "animus3d.export_ply_sequence"
    bl_label = "Export PLY Sequence"
    bl_options = {"REGISTER"}
    directory: StringProperty(subtype="DIR_PATH")

    @classmethod
    def poll(cls, context):
        return context.active_object is not None and bake.baked_frames(context.active_object) > 0

    def invoke(self, context, _event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        obj = context.active_object
        if obj is None:
            self.report({"ERROR"}, "Select the animated splat object to export")
            return {"CANCELLED"}
        if not self.directory:
            self.report({"ERROR"}, "Choose a folder to write the PLY files into")
            return {"CANCELLED"}
        try:
            paths = ply_io.export_ply_sequence(obj, bpy.path.abspath(self.directory))
        except (ply_io.ExportError, SplatError, OSError, AttributeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {len(paths)} PLY files to {self.directory}")
        return {"FINISHED"}


class ANIMUS3D_OT_connect(bpy.types.Operator):
    """Connect to the worker at the address in the preferences"""

    bl_idname = "animus3d.connect"
    bl_label = "Connect"

    def execute(self, context):
        prefs = preferences(context)
        try:
            SESSION.connect(prefs.worker_address, prefs.heartbeat_timeout_s, keys.from_preferences(prefs))
        except Exception as exc:  # bad address strings raise from zmq; key files KeyFileError
            self.report({"ERROR"}, f"Cannot connect to {prefs.worker_address}: {exc}")
            return {"CANCELLED"}
        SESSION.request_status()
        return {"FINISHED"}


def worker_state_dir() -> str:
    """The add-on's own folder for the local worker's pid file and log."""
    try:
        return bpy.utils.extension_path_user(__package__, path="local_worker", create=True)
    except (AttributeError, ValueError, RuntimeError):  # installed as a legacy add-on, not an extension
        return os.path.join(tempfile.gettempdir(), "animus3d-local-worker")


class ANIMUS3D_OT_start_worker(bpy.types.Operator):
    """Start a worker on this machine with the command in the preferences, and connect to it"""

    bl_idname = "animus3d.start_worker"
    bl_label = "Start Local Worker"

    def execute(self, context):
        prefs = preferences(context)
        try:
            proc = local_worker.start(prefs.worker_command, worker_state_dir())
        except local_worker.WorkerStartError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        address = local_worker.bind_address(prefs.worker_command) or prefs.worker_address
        SESSION.connect(address, prefs.heartbeat_timeout_s)
        self.report({"INFO"}, f"Starting the local worker (pid {proc.pid}) on {address}; "
                              f"log: {local_worker.log_path()}")
        return {"FINISHED"}


class ANIMUS3D_OT_stop_worker(bpy.types.Operator):
    """Stop the worker started from Blender (it is killed if it has not ended within a few seconds)"""

    bl_idname = "animus3d.stop_worker"
    bl_label = "Stop Local Worker"

    def execute(self, _context):
        local_worker.stop()
        return {"FINISHED"}


class ANIMUS3D_OT_show_worker_log(bpy.types.Operator):
    """Open the local worker's log in Blender's text editor (reloaded from disk)"""

    bl_idname = "animus3d.show_worker_log"
    bl_label = "Worker Log"

    @classmethod
    def poll(cls, _context):
        path = local_worker.log_path()
        return path is not None and path.is_file()

    def execute(self, context):
        path = local_worker.log_path()
        name = "animus3d_worker.log"
        text = bpy.data.texts.get(name) or bpy.data.texts.new(name)
        try:
            text.from_string(path.read_bytes()[-LOG_SHOWN_BYTES:].decode(errors="replace"))
        except OSError as exc:
            self.report({"ERROR"}, f"Cannot read {path}: {exc}")
            return {"CANCELLED"}
        for area in context.screen.areas if context.screen else ():
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
                break
        self.report({"INFO"}, f"The worker log is in the text {name!r} ({path})")
        return {"FINISHED"}


def worker_address(prefs) -> str:
    """Where the next job goes: the local worker started from Blender while it runs, otherwise the
    address in the preferences as it is now (a changed address applies without pressing Connect)."""
    if local_worker.running():
        return local_worker.bind_address(prefs.worker_command) or prefs.worker_address
    return prefs.worker_address


class ANIMUS3D_OT_report(bpy.types.Operator):
    """Put a message of the add-on's background work into Blender's report area and info log"""

    bl_idname = "animus3d.report"
    bl_label = "Animus3D Report"
    bl_options = {"INTERNAL"}
    level: StringProperty(default="INFO", options={"SKIP_SAVE"})
    message: StringProperty(default="", options={"SKIP_SAVE"})

    def execute(self, _context):
        self.report({self.level if self.level in ("INFO", "WARNING", "ERROR") else "INFO"}, self.message)
        return {"FINISHED"}


class ANIMUS3D_OT_animate(bpy.types.Operator):
    """Animate the active splat from the text prompt (the worker computes; Blender stays responsive)"""

    bl_idname = "animus3d.animate"
    bl_label = "Animate from Text"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return is_splat_mesh(context.active_object)

    def execute(self, context):
        obj, scene = context.active_object, context.scene
        props = scene.animus3d
        if not props.prompt.strip():
            self.report({"ERROR"}, "Write a prompt describing the motion first")
            return {"CANCELLED"}
        if not props.static_prompt.strip():
            props.static_prompt = derive_static_prompt(obj.name)
        prefs = preferences(context)
        try:
            local = local_worker.running()  # a worker started from Blender listens on loopback, without keys
            SESSION.connect(worker_address(prefs), prefs.heartbeat_timeout_s, None if local else keys.from_preferences(prefs))
            SESSION.submit(obj, scene, props.prompt.strip(), props.static_prompt.strip(), props.job_settings(), int(props.seed))
        except (RuntimeError, SplatMeshError, SplatError, ValueError) as exc:  # KeyFileError is a ValueError
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Submitted {obj.name!r} to {SESSION.address}")
        return {"FINISHED"}


class ANIMUS3D_OT_cancel(bpy.types.Operator):
    """Cancel the running animation job"""

    bl_idname = "animus3d.cancel"
    bl_label = "Cancel"

    def execute(self, _context):
        if SESSION.job is None or not SESSION.job.active:
            self.report({"WARNING"}, "No job is running")
            return {"CANCELLED"}
        SESSION.cancel()
        return {"FINISHED"}


class ANIMUS3D_OT_clear_animation(bpy.types.Operator):
    """Remove the baked animation from the active object (its original data is kept)"""

    bl_idname = "animus3d.clear_animation"
    bl_label = "Remove Animation"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            return False
        job = SESSION.job
        running_here = job is not None and job.active and job.object_name == obj.name
        return bake.baked_frames(obj) > 0 or (bake.preview_frames(obj) > 0 and not running_here)

    def execute(self, context):
        bake.clear_animation(context.active_object, context.scene)
        return {"FINISHED"}


def menu_import(self, _context):
    self.layout.operator(ANIMUS3D_OT_import_ply.bl_idname, text="Gaussian Splat (.ply)")


def menu_export(self, _context):
    self.layout.operator(ANIMUS3D_OT_export_ply_sequence.bl_idname, text="Gaussian Splat Sequence (.ply)")


CLASSES = (
    ANIMUS3D_OT_report,
    ANIMUS3D_OT_import_ply,
    ANIMUS3D_OT_export_ply_sequence,
    ANIMUS3D_OT_connect,
    ANIMUS3D_OT_start_worker,
    ANIMUS3D_OT_stop_worker,
    ANIMUS3D_OT_show_worker_log,
    ANIMUS3D_OT_animate,
    ANIMUS3D_OT_cancel,
    ANIMUS3D_OT_clear_animation,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)
    bpy.types.TOPBAR_MT_file_export.append(menu_export)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_export.remove(menu_export)
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
