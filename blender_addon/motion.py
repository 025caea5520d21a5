"""Motion as data: a Geometry Nodes modifier that shows the frame a keyed property names.

Every frame ``t`` of a clip is stored on the mesh as point attributes (``{prefix}{t}_pos``
FLOAT_VECTOR absolute positions, ``{prefix}{t}_rot`` QUATERNION wxyz, ``{prefix}{t}_scale``
FLOAT_VECTOR log-scales). The *Animus3D Motion* modifier (first in the stack) reads the attributes
of the frame named by its ``Clip Frame`` input, sets the positions and writes that frame's
rotation and scale into the standard ``rot_0..3`` / ``scale_0..2`` attributes of the evaluated
geometry. ``Clip Frame`` is keyed in the object's own Action (CONSTANT keys: −1 before the clip,
``t`` on scene frame ``start + t``, −1 after it); a frame whose attributes do not exist (−1) shows
the original splat. So the animation is the Action plus mesh data: retiming the keys in the Dope
Sheet, NLA strips, linking the object into another file and rendering without the add-on all play
it, and nothing runs on frame change.

A live preview uses its own attribute prefix (``animus3d_p``) and its own keyed input
(``Preview Frame``), switched on by the ``Preview`` input, so a preview never touches a finished
bake and is removed without trace (:func:`remove_keys` and the bake module's preview removal).
"""

from __future__ import annotations

from .node_groups import VERSION_KEY, socket_id, versioned_group

GROUP_NAME = "Animus3D Motion"
MODIFIER_NAME = "Animus3D Motion"
BAKE_PREFIX = "animus3d_f"
PREVIEW_PREFIX = "animus3d_p"
CLIP_FRAME = "Clip Frame"
PREVIEW_FRAME = "Preview Frame"
PREVIEW = "Preview"
GROUP_VERSION = 1  # stored on the group; a group of another version is rebuilt


def attr_name(prefix: str, t: int, what: str) -> str:
    """``what`` is ``pos``, ``rot`` or ``scale``; names match what the node group builds."""
    return f"{prefix}{int(t)}_{what}"


def _node(nodes, kind: str, x: float, y: float, **props):
    node = nodes.new(kind)
    node.location = (x, y)
    for key, value in props.items():
        setattr(node, key, value)
    return node


def _named(nodes, links, data_type: str, name_socket, x: float, y: float):
    node = _node(nodes, "GeometryNodeInputNamedAttribute", x, y, data_type=data_type)
    links.new(name_socket, node.inputs["Name"])
    return node


def _store(nodes, links, geometry, name: str, value, selection, x: float, y: float):
    node = _node(nodes, "GeometryNodeStoreNamedAttribute", x, y, data_type="FLOAT", domain="POINT")
    node.inputs["Name"].default_value = name
    links.new(geometry, node.inputs["Geometry"])
    links.new(value, node.inputs["Value"])
    links.new(selection, node.inputs["Selection"])
    return node.outputs["Geometry"]


def ensure_node_group(bpy):
    """The motion node group, built once per file."""
    group, current = versioned_group(bpy, GROUP_NAME, GROUP_VERSION)
    if current:
        return group
    iface = group.interface
    iface.new_socket(name="Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    clip = iface.new_socket(name=CLIP_FRAME, in_out="INPUT", socket_type="NodeSocketFloat")
    clip.default_value = -1.0
    prev = iface.new_socket(name=PREVIEW_FRAME, in_out="INPUT", socket_type="NodeSocketFloat")
    prev.default_value = -1.0
    iface.new_socket(name=PREVIEW, in_out="INPUT", socket_type="NodeSocketBool")
    iface.new_socket(name="Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    g_in = _node(nodes, "NodeGroupInput", -1400, 0)
    g_out = _node(nodes, "NodeGroupOutput", 1400, 0)

    # the frame's number as text, and the prefix of the data set shown
    frame = _node(nodes, "GeometryNodeSwitch", -1150, -300, input_type="FLOAT")
    links.new(g_in.outputs[PREVIEW], frame.inputs["Switch"])
    links.new(g_in.outputs[CLIP_FRAME], frame.inputs["False"])
    links.new(g_in.outputs[PREVIEW_FRAME], frame.inputs["True"])
    rounded = _node(nodes, "ShaderNodeMath", -950, -300, operation="ROUND")
    links.new(frame.outputs[0], rounded.inputs[0])
    text = _node(nodes, "FunctionNodeValueToString", -780, -300)
    text.inputs["Decimals"].default_value = 0
    links.new(rounded.outputs[0], text.inputs["Value"])
    prefix = _node(nodes, "GeometryNodeSwitch", -950, -500, input_type="STRING")
    prefix.inputs["False"].default_value = BAKE_PREFIX
    prefix.inputs["True"].default_value = PREVIEW_PREFIX
    links.new(g_in.outputs[PREVIEW], prefix.inputs["Switch"])

    names = {}
    for k, what in enumerate(("pos", "rot", "scale")):
        with_prefix = _node(nodes, "FunctionNodeReplaceString", -600, -300 - 160 * k)
        with_prefix.inputs["String"].default_value = "{p}{t}_" + what
        with_prefix.inputs["Find"].default_value = "{p}"
        links.new(prefix.outputs[0], with_prefix.inputs["Replace"])
        with_frame = _node(nodes, "FunctionNodeReplaceString", -420, -300 - 160 * k)
        with_frame.inputs["Find"].default_value = "{t}"
        links.new(with_prefix.outputs[0], with_frame.inputs["String"])
        links.new(text.outputs[0], with_frame.inputs["Replace"])
        names[what] = with_frame.outputs[0]

    pos = _named(nodes, links, "FLOAT_VECTOR", names["pos"], -200, 200)
    set_pos = _node(nodes, "GeometryNodeSetPosition", 0, 0)
    links.new(g_in.outputs["Geometry"], set_pos.inputs["Geometry"])
    links.new(pos.outputs["Exists"], set_pos.inputs["Selection"])
    links.new(pos.outputs["Attribute"], set_pos.inputs["Position"])
    geometry = set_pos.outputs["Geometry"]

    rot = _named(nodes, links, "QUATERNION", names["rot"], -200, -200)
    wxyz = _node(nodes, "FunctionNodeRotationToQuaternion", 0, -200)
    links.new(rot.outputs["Attribute"], wxyz.inputs["Rotation"])
    for c, comp in enumerate("WXYZ"):
        geometry = _store(nodes, links, geometry, f"rot_{c}", wxyz.outputs[comp], rot.outputs["Exists"],
                          200 + 170 * c, 0)
    scale = _named(nodes, links, "FLOAT_VECTOR", names["scale"], -200, -450)
    xyz = _node(nodes, "ShaderNodeSeparateXYZ", 0, -450)
    links.new(scale.outputs["Attribute"], xyz.inputs[0])
    for c in range(3):
        geometry = _store(nodes, links, geometry, f"scale_{c}", xyz.outputs[c], scale.outputs["Exists"],
                          880 + 170 * c, 0)
    links.new(geometry, g_out.inputs[0])
    return group


def ensure_modifier(bpy, obj):
    """The motion modifier of ``obj``, added once and kept first in the modifier stack."""
    mod = obj.modifiers.get(MODIFIER_NAME)
    if mod is None:
        mod = obj.modifiers.new(MODIFIER_NAME, "NODES")
    if mod.node_group is None or mod.node_group.name != GROUP_NAME or mod.node_group.get(VERSION_KEY) != GROUP_VERSION:
        mod.node_group = ensure_node_group(bpy)
    index = list(obj.modifiers).index(mod)
    if index != 0:
        obj.modifiers.move(index, 0)
    return mod


def input_path(obj, name: str) -> str:
    mod = obj.modifiers[MODIFIER_NAME]
    return f'modifiers["{MODIFIER_NAME}"]["{socket_id(mod.node_group, name)}"]'


def set_input(obj, name: str, value) -> None:
    mod = obj.modifiers.get(MODIFIER_NAME)
    if mod is not None and mod.node_group is not None:
        mod[socket_id(mod.node_group, name)] = value
        obj.update_tag()


def key_clip(obj, name: str, frame_start: int, frames: int, fcurves_of) -> None:
    """Key input ``name`` CONSTANT: −1 on ``frame_start − 1``, ``t`` on ``frame_start + t``, −1 after."""
    remove_keys(obj, name, fcurves_of)
    path = input_path(obj, name)
    mod = obj.modifiers[MODIFIER_NAME]
    ident = socket_id(mod.node_group, name)
    mod[ident] = -1.0
    obj.keyframe_insert(data_path=path, frame=frame_start - 1)
    fcurve = fcurves_of(obj).find(path)
    values = [(float(frame_start + t), float(t)) for t in range(frames)] + [(float(frame_start + frames), -1.0)]
    points = fcurve.keyframe_points
    first = len(points)
    points.add(len(values))
    for k, (f, v) in enumerate(values):
        points[first + k].co = (f, v)
    for point in points:
        point.interpolation = "CONSTANT"
    fcurve.update()
    obj.update_tag()


def remove_keys(obj, name: str, fcurves_of) -> None:
    """Remove the F-curve keying input ``name`` and reset the input to −1 (the original splat)."""
    mod = obj.modifiers.get(MODIFIER_NAME)
    if mod is None or mod.node_group is None:
        return
    path = input_path(obj, name)
    fcurves = fcurves_of(obj)
    if fcurves is not None:
        fcurve = fcurves.find(path)
        if fcurve is not None:
            fcurves.remove(fcurve)
    mod[socket_id(mod.node_group, name)] = -1.0
    obj.update_tag()
