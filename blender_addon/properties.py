"""Scene settings of the panel (``scene.animus3d``) and the add-on preferences."""

from __future__ import annotations

import re

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .animus3d_shared.settings import ARTIST_PRESETS, DEFAULT_PRESET, NOISE_MODES, PRESETS, STATIC_PRIORS, JobSettings, SettingsError
from .local_worker import DEFAULT_COMMAND

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
# The panel offers the product ladder (ARTIST_PRESETS); `test` (smoke runs) and the paper presets
# stay reachable from scripts through ``preset_override``.
PRESET_ITEMS = [(name, name.capitalize(), f"the '{name}' preset") for name in ARTIST_PRESETS if name in PRESETS]
DEFAULTS = JobSettings.from_preset(DEFAULT_PRESET)
ADVANCED_FIELDS = ("guide_steps", "msd_steps", "lora_steps", "guidance_scale", "arap_weight", "tv_weight", "noise_mode", "static_prior")


def derive_static_prompt(object_name: str) -> str:
    """A static prompt from an object name: 'Red_Fox.001' -> 'a 3D model of a red fox'."""
    words = re.sub(r"\.\d+$", "", object_name)
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", words)
    words = re.sub(r"[_\-.]+", " ", words).strip().lower()
    return f"a 3D model of a {words}" if words else "a 3D model"


class Animus3DSceneSettings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", description="The motion to create, e.g. 'a dog wagging its tail'")
    static_prompt: StringProperty(
        name="Static prompt",
        description="What the object is; derived from the object name when empty",
    )
    preset: EnumProperty(
        name="Preset",
        items=PRESET_ITEMS,
        default=DEFAULT_PRESET,
    )
    preset_override: StringProperty(
        name="Preset (scripts)", default="", options={"HIDDEN"},
        description="Any worker preset by name, sent instead of Preset when set (scripts and smoke runs)",
    )
    frames: IntProperty(name="Frames", default=0, min=0, max=512,
                        description="Frames of the baked clip (0: the preset's). Refinement makes a multiple of "
                                    "its factor, so the clip is the next such length at or above this")
    seed: IntProperty(name="Seed", default=0, min=0)
    fit_scene_range: BoolProperty(
        name="Fit scene range",
        description="Set the scene's frame range to the baked clip (Remove Animation restores it)",
        default=False,
    )
    use_advanced: BoolProperty(name="Override preset", description="Send the advanced settings below", default=False)
    # Override defaults are the default preset's, so ticking "Override preset" changes nothing by itself.
    guide_steps: IntProperty(name="Guide fit steps", description="0: no guide clip (the paper's method)",
                             default=DEFAULTS.guide_steps, min=0, max=100_000)
    msd_steps: IntProperty(name="MSD steps", default=DEFAULTS.msd_steps, min=0, max=100_000)
    lora_steps: IntProperty(name="LoRA steps", default=DEFAULTS.lora_steps, min=0, max=100_000)
    guidance_scale: FloatProperty(name="Guidance", default=7.5, min=0.0, max=100.0)
    arap_weight: FloatProperty(name="ARAP weight", default=8.0, min=0.0, max=1e6)
    tv_weight: FloatProperty(name="TV weight", default=1.0, min=0.0, max=1e6)
    noise_mode: EnumProperty(name="Noise", items=[(m, m.replace("_", " ").title(), "") for m in NOISE_MODES])
    static_prior: EnumProperty(name="Static prior", items=[(m, m.upper() if m == "lora" else m.title(), "") for m in STATIC_PRIORS])
    # The job in flight: stored in the file so reopening it re-attaches.
    job_id: StringProperty(name="Job", default="")
    job_object: StringProperty(name="Job object", default="")

    def clip_frames(self) -> int | None:
        """Frames of the clip the next Animate bakes (None for a preset this add-on does not know)."""
        try:
            return JobSettings.from_dict(self.job_settings()).clip_frames
        except (SettingsError, TypeError, ValueError):
            return None

    def job_settings(self) -> dict:
        """The settings dict sent with SUBMIT: the preset plus overrides."""
        settings: dict = {"preset": self.preset_override or self.preset}
        if self.frames:
            preset = JobSettings.from_preset(settings["preset"]) if settings["preset"] in PRESETS else None
            settings["frames"] = preset.frames_for_clip(self.frames) if preset else int(self.frames)
        if self.use_advanced:
            for name in ADVANCED_FIELDS:
                settings[name] = getattr(self, name)
        return settings


class Animus3DPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    worker_address: StringProperty(name="Worker address", default=DEFAULT_ADDRESS)
    worker_command: StringProperty(
        name="Local worker command",
        description="Command line that starts a worker on this machine",
        default=DEFAULT_COMMAND,
    )
    heartbeat_timeout_s: FloatProperty(name="Heartbeat timeout (s)", default=10.0, min=1.0, max=600.0)
    server_key_file: StringProperty(
        name="Worker public key", subtype="FILE_PATH", default="",
        description="CURVE: the worker's server.key (made by `animus3d keygen DIR`); empty for a local worker",
    )
    client_key_file: StringProperty(
        name="Client key pair", subtype="FILE_PATH", default="",
        description="CURVE: this client's NAME.key_secret (made by `animus3d keygen DIR --client NAME`)",
    )

    def draw(self, _context):
        col = self.layout.column()
        col.prop(self, "worker_address")
        col.prop(self, "worker_command")
        col.prop(self, "heartbeat_timeout_s")
        box = col.box()
        box.label(text="Authenticated worker (CURVE keys, applied on the next Connect or Animate)")
        box.prop(self, "server_key_file")
        box.prop(self, "client_key_file")


class _Defaults:
    worker_address = DEFAULT_ADDRESS
    worker_command = DEFAULT_COMMAND
    heartbeat_timeout_s = 10.0
    server_key_file = ""
    client_key_file = ""


def preferences(context=None):
    """The add-on preferences, or defaults when the add-on is registered outside an extension."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None and addon.preferences is not None else _Defaults()


CLASSES = (Animus3DSceneSettings, Animus3DPreferences)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.animus3d = PointerProperty(type=Animus3DSceneSettings)


def unregister() -> None:
    if hasattr(bpy.types.Scene, "animus3d"):
        del bpy.types.Scene.animus3d
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
