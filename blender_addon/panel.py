"""3D View ▸ Sidebar ▸ Animus3D."""

from __future__ import annotations

import bpy

from . import bake, local_worker
from .properties import ADVANCED_FIELDS, derive_static_prompt, preferences
from .session import SESSION


def _eta_text(eta_s) -> str:
    if eta_s is None:
        return ""
    eta_s = int(eta_s)
    return f", ETA {eta_s // 60}:{eta_s % 60:02d}"


# Priors that ship with the worker for trying it out; they do not follow prompts reliably.
DEMO_PRIORS = ("embedded", "tiny")


def prior_notice(models) -> tuple[str, ...]:
    """Lines to show when the worker animates with a built-in demo prior (nothing otherwise), so an
    artist knows poor motion is the model's limit and where the real models are configured."""
    specs = models.values() if isinstance(models, dict) else (models or ())
    if not any(str(spec).split(":", 1)[0] in DEMO_PRIORS for spec in specs):
        return ()
    return ("Demo prior: motion may not follow the prompt.",
            "For real results configure ModelScope/ZeroScope",
            "in the worker's models.toml (see README).")


class _Sidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Animus3D"


class ANIMUS3D_PT_panel(_Sidebar, bpy.types.Panel):
    """The motion to make, the job's progress and the baked result of the active object."""

    bl_label = "Animus3D"
    bl_idname = "ANIMUS3D_PT_panel"

    def draw(self, context):
        layout = self.layout
        props = context.scene.animus3d
        obj = context.active_object
        col = layout.column()
        col.prop(props, "prompt")
        col.prop(props, "static_prompt")
        if not props.static_prompt and obj is not None:
            col.label(text=f"(auto) {derive_static_prompt(obj.name)}")
        col.prop(props, "preset")
        row = col.row(align=True)
        row.prop(props, "frames")
        row.prop(props, "seed")
        clip = props.clip_frames()
        if clip is not None:
            col.label(text=f"Clip: {clip} frames", icon="TIME")
        col.prop(props, "fit_scene_range")

        job = SESSION.job
        if job is not None and job.active:
            text = f"{job.stage or job.phase} {job.step}/{job.total}{_eta_text(job.eta_s)}"
            if hasattr(layout, "progress"):
                layout.progress(factor=job.fraction, type="BAR", text=text)
            else:
                layout.label(text=text)
            layout.operator("animus3d.cancel", icon="CANCEL")
        else:
            layout.operator("animus3d.animate", icon="PLAY")
        if job is not None and job.error:
            layout.label(text=job.error, icon="ERROR")
        elif job is not None and job.message:
            layout.label(text=job.message)
        if job is not None and job.read_as:
            layout.label(text=f"Read as: {job.read_as}", icon="INFO")
        for text in (job.warnings if job is not None else ()):
            layout.label(text=text, icon="ERROR")
        if obj is not None and bake.baked_frames(obj):
            row = layout.row(align=True)
            row.operator("animus3d.export_ply_sequence")
            row.operator("animus3d.clear_animation")
        elif obj is not None and bake.preview_frames(obj):
            layout.label(text=f"Preview ({bake.preview_frames(obj)} frames), not a bake", icon="HIDE_OFF")
            if not (job is not None and job.active and job.object_name == obj.name):
                layout.operator("animus3d.clear_animation", text="Remove Preview")


class ANIMUS3D_PT_worker(_Sidebar, bpy.types.Panel):
    """Where jobs run: the worker's address, what it reports, the local worker."""

    bl_label = "Worker"
    bl_idname = "ANIMUS3D_PT_worker"
    bl_parent_id = "ANIMUS3D_PT_panel"

    def draw(self, context):
        box = self.layout.column()
        prefs = preferences(context)
        if isinstance(prefs, bpy.types.AddonPreferences):
            box.prop(prefs, "worker_address", text="Address")  # used by the next Animate
        box.label(text=f"Connected to: {SESSION.address}" if SESSION.address else "Not connected yet")
        welcome = SESSION.welcome
        if SESSION.connected and welcome is not None:
            box.label(text=f"Device: {getattr(welcome, 'device', '?')}", icon="CHECKMARK")
            models = getattr(welcome, "models", None)
            if isinstance(models, dict):
                for role, model in models.items():
                    box.label(text=f"{role}: {model}")
            elif models:
                box.label(text="Models: " + ", ".join(str(m) for m in models))
            for k, line in enumerate(prior_notice(models)):
                box.label(text=line, icon="INFO" if k == 0 else "BLANK1")
            status = SESSION.status
            if status is not None:
                queue = getattr(status, "queue", None) or []
                running = getattr(status, "running", None)
                box.label(text=f"Queue: {len(queue)} waiting, {'1 running' if running else 'idle'}")
        else:
            box.label(text="Not connected", icon="ERROR" if SESSION.error else "INFO")
        if SESSION.error:
            box.label(text=SESSION.error, icon="ERROR")
        row = box.row(align=True)
        row.operator("animus3d.connect")
        if local_worker.running():
            row.operator("animus3d.stop_worker")
        else:
            row.operator("animus3d.start_worker")
        if local_worker.log_path() is not None:
            row.operator("animus3d.show_worker_log", text="", icon="TEXT")


class ANIMUS3D_PT_advanced(_Sidebar, bpy.types.Panel):
    """Settings sent instead of the preset's when the header's box is ticked."""

    bl_label = "Override Preset"
    bl_idname = "ANIMUS3D_PT_advanced"
    bl_parent_id = "ANIMUS3D_PT_panel"
    bl_options = {"DEFAULT_CLOSED"}

    def draw_header(self, context):
        self.layout.prop(context.scene.animus3d, "use_advanced", text="")

    def draw(self, context):
        props = context.scene.animus3d
        col = self.layout.column()
        col.enabled = props.use_advanced
        for name in ADVANCED_FIELDS:
            col.prop(props, name)


CLASSES = (ANIMUS3D_PT_panel, ANIMUS3D_PT_worker, ANIMUS3D_PT_advanced)  # parents first


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
