"""Viewport display of a splat mesh through a geometry-nodes modifier.

The node group turns vertices into points whose radius is the largest activated scale
(``exp(max(scale_0..2))``) and stores the view-independent colour ``f_dc * C0 + 0.5`` as the
point attribute ``animus3d_color``, which the material reads. Because it reads the standard
attributes live, the display follows the per-frame rotation/scale swap of a baked animation.
"""

from __future__ import annotations

from .animus3d_shared.splat import SH_C0

GROUP_NAME = "Animus3D Splat Display"
MODIFIER_NAME = "Animus3D Display"
MATERIAL_NAME = "Animus3D Splat"
COLOR_ATTR = "animus3d_color"


def _named_float(nodes, name: str, x: float, y: float):
    node = nodes.new("GeometryNodeInputNamedAttribute")
    node.data_type = "FLOAT"
    node.inputs["Name"].default_value = name
    node.location = (x, y)
    return node


def _math(nodes, op: str, x: float, y: float, b: float | None = None, c: float | None = None):
    node = nodes.new("ShaderNodeMath")
    node.operation = op
    node.location = (x, y)
    if b is not None:
        node.inputs[1].default_value = b
    if c is not None:
        node.inputs[2].default_value = c
    return node


def ensure_node_group(bpy):
    """The display node group, built once per file."""
    group = bpy.data.node_groups.get(GROUP_NAME)
    if group is not None:
        return group
    group = bpy.data.node_groups.new(GROUP_NAME, "GeometryNodeTree")
    group.interface.new_socket(name="Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket(name="Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    g_in = nodes.new("NodeGroupInput")
    g_in.location = (-900, 0)
    g_out = nodes.new("NodeGroupOutput")
    g_out.location = (600, 0)

    # radius = exp(max(scale_0, scale_1, scale_2))
    s = [_named_float(nodes, f"scale_{c}", -900, -200 - 120 * c) for c in range(3)]
    m1 = _math(nodes, "MAXIMUM", -650, -250)
    links.new(s[0].outputs["Attribute"], m1.inputs[0])
    links.new(s[1].outputs["Attribute"], m1.inputs[1])
    m2 = _math(nodes, "MAXIMUM", -500, -250)
    links.new(m1.outputs[0], m2.inputs[0])
    links.new(s[2].outputs["Attribute"], m2.inputs[1])
    radius = _math(nodes, "EXPONENT", -350, -250)
    links.new(m2.outputs[0], radius.inputs[0])

    to_points = nodes.new("GeometryNodeMeshToPoints")
    to_points.location = (-150, 0)
    links.new(g_in.outputs[0], to_points.inputs["Mesh"])
    links.new(radius.outputs[0], to_points.inputs["Radius"])

    # colour = f_dc * C0 + 0.5
    combine = nodes.new("ShaderNodeCombineXYZ")
    combine.location = (-150, -500)
    for c in range(3):
        dc = _named_float(nodes, f"f_dc_{c}", -650, -450 - 120 * c)
        mad = _math(nodes, "MULTIPLY_ADD", -400, -450 - 120 * c, SH_C0, 0.5)
        links.new(dc.outputs["Attribute"], mad.inputs[0])
        links.new(mad.outputs[0], combine.inputs[c])
    store = nodes.new("GeometryNodeStoreNamedAttribute")
    store.location = (100, 0)
    store.data_type = "FLOAT_VECTOR"
    store.domain = "POINT"
    store.inputs["Name"].default_value = COLOR_ATTR
    links.new(to_points.outputs["Points"], store.inputs["Geometry"])
    links.new(combine.outputs[0], store.inputs["Value"])

    set_mat = nodes.new("GeometryNodeSetMaterial")
    set_mat.location = (350, 0)
    set_mat.inputs["Material"].default_value = ensure_material(bpy)
    links.new(store.outputs["Geometry"], set_mat.inputs["Geometry"])
    links.new(set_mat.outputs["Geometry"], g_out.inputs[0])
    return group


def ensure_material(bpy):
    """An emissive material coloured by the ``animus3d_color`` attribute."""
    mat = bpy.data.materials.get(MATERIAL_NAME)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(MATERIAL_NAME)
    if hasattr(mat, "use_nodes") and not mat.use_nodes:
        mat.use_nodes = True
    tree = mat.node_tree
    tree.nodes.clear()
    attr = tree.nodes.new("ShaderNodeAttribute")
    attr.attribute_name = COLOR_ATTR
    attr.location = (-400, 0)
    emit = tree.nodes.new("ShaderNodeEmission")
    emit.location = (-150, 0)
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    out.location = (100, 0)
    tree.links.new(attr.outputs["Color"], emit.inputs["Color"])
    tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    return mat


def add_display(bpy, obj):
    """Add (once) the display modifier to a splat object."""
    mod = obj.modifiers.get(MODIFIER_NAME)
    if mod is None:
        mod = obj.modifiers.new(MODIFIER_NAME, "NODES")
    mod.node_group = ensure_node_group(bpy)
    return mod
