"""Open a .blend (argv[1]) and describe the animated splat in it."""

import sys

import bpy

from common import finish

bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
scene = bpy.context.scene
obj = next(o for o in bpy.data.objects if o.type == "MESH")
keys = obj.data.shape_keys
finish({
    "object": obj.name,
    "vertices": len(obj.data.vertices),
    "keys": [kb.name for kb in keys.key_blocks] if keys else [],
    "range": [scene.frame_start, scene.frame_end],
    "frames_prop": int(obj.get("animus3d_frames", 0)),
    "modifiers": [m.name for m in obj.modifiers],
})
