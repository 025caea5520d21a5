"""Open a .blend (argv[1]) and describe the animated splat in it."""

import sys

import bpy

from common import finish

bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
scene = bpy.context.scene
obj = next(o for o in bpy.data.objects if o.type == "MESH")
finish({
    "object": obj.name,
    "vertices": len(obj.data.vertices),
    "frame_attrs": sorted(a.name for a in obj.data.attributes if a.name.startswith("animus3d_")),
    "range": [scene.frame_start, scene.frame_end],
    "frames_prop": int(obj.get("animus3d_frames", 0)),
    "modifiers": [m.name for m in obj.modifiers],
})
