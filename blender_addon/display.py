"""Viewport and render display of a splat mesh through a geometry-nodes modifier.

Two modes, switched by the modifier's ``Points`` input:

- **Gaussians** (default): every Gaussian is an instanced, smooth-shaded ico sphere rotated by its
  quaternion (``rot_0..3``, wxyz) and scaled per axis by ``Sigmas · exp(scale_k)``, so the display is
  anisotropic like the splat. The material fades each ellipsoid like a Gaussian seen face-on
  (``opacity · exp(-½ Sigmas² r²)``, r the distance from the centre as a fraction of the ellipsoid's
  outline, recovered from the view angle) and blends it over what lies behind.
- **Points** (fast, chosen on import above ``POINT_MODE_ABOVE`` Gaussians): one point per Gaussian
  with radius ``exp(max scale)``, the same colour and opacity.

Colour is the view-independent ``f_dc · C0 + 0.5``, opacity ``sigmoid(opacity)``; both are stored as
attributes the one material reads (from the instancer in Gaussians mode, from the points in Points
mode). The display reads the standard attributes live, so it follows the motion modifier before it.
"""

from __future__ import annotations

from .animus3d_shared.splat import SH_C0
from .node_groups import VERSION_KEY, socket_id, versioned_group

GROUP_NAME = "Animus3D Splat Display"
GROUP_VERSION = 2  # a file whose group has another version gets it rebuilt
MODIFIER_NAME = "Animus3D Display"
MATERIAL_NAME = "Animus3D Splat"
COLOR_ATTR = "animus3d_color"
ALPHA_ATTR = "animus3d_alpha"
SIGMAS_ATTR = "animus3d_sigmas"  # the outline's distance from the centre in σ (Points mode: 1)
POINTS = "Points"
SIGMAS = "Sigmas"
DEFAULT_SIGMAS = 2.0  # the ellipsoid reaches 2 σ: the Gaussian's edge is at exp(-2) ≈ 14 % of its centre
POINT_MODE_ABOVE = 300_000  # Gaussians; larger splats import in Points mode (instancing costs memory)


def _node(nodes, kind: str, x: float, y: float):
    node = nodes.new(kind)
    node.location = (x, y)
    return node


def _named_float(nodes, name: str, x: float, y: float):
    node = _node(nodes, "GeometryNodeInputNamedAttribute", x, y)
    node.data_type = "FLOAT"
    node.inputs["Name"].default_value = name
    return node.outputs["Attribute"]


def _math(nodes, links, op: str, x: float, y: float, *inputs):
    """A float math node; each input is a socket to link or a number to set."""
    node = _node(nodes, "ShaderNodeMath", x, y)
    node.operation = op
    for k, value in enumerate(inputs):
        if isinstance(value, (int, float)):
            node.inputs[k].default_value = value
        else:
            links.new(value, node.inputs[k])
    return node.outputs[0]


def _store(nodes, links, geometry, name: str, data_type: str, value, x: float, y: float):
    node = _node(nodes, "GeometryNodeStoreNamedAttribute", x, y)
    node.data_type = data_type
    node.domain = "POINT"
    node.inputs["Name"].default_value = name
    links.new(geometry, node.inputs["Geometry"])
    if isinstance(value, float):
        node.inputs["Value"].default_value = value
    else:
        links.new(value, node.inputs["Value"])
    return node.outputs["Geometry"]


def ensure_node_group(bpy):
    """The display node group, built once per file (rebuilt when it is of another version)."""
    group, current = versioned_group(bpy, GROUP_NAME, GROUP_VERSION)
    if current:
        return group
    iface = group.interface
    iface.new_socket(name="Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    points = iface.new_socket(name=POINTS, in_out="INPUT", socket_type="NodeSocketBool")
    points.description = "Fast display: one point per Gaussian instead of an oriented ellipsoid"
    sigmas = iface.new_socket(name=SIGMAS, in_out="INPUT", socket_type="NodeSocketFloat")
    sigmas.default_value, sigmas.min_value, sigmas.max_value = DEFAULT_SIGMAS, 0.5, 4.0
    sigmas.description = "Size of each ellipsoid in standard deviations of its Gaussian"
    iface.new_socket(name="Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    g_in = _node(nodes, "NodeGroupInput", -1400, 0)
    g_out = _node(nodes, "NodeGroupOutput", 1000, 0)

    # colour = f_dc * C0 + 0.5, alpha = sigmoid(opacity)
    color = _node(nodes, "ShaderNodeCombineXYZ", -700, -600)
    for c in range(3):
        links.new(_math(nodes, links, "MULTIPLY_ADD", -900, -500 - 120 * c,
                        _named_float(nodes, f"f_dc_{c}", -1150, -500 - 120 * c), SH_C0, 0.5), color.inputs[c])
    neg = _math(nodes, links, "MULTIPLY", -1000, -950, _named_float(nodes, "opacity", -1200, -950), -1.0)
    alpha = _math(nodes, links, "DIVIDE", -700, -950, 1.0,
                  _math(nodes, links, "ADD", -850, -950, 1.0, _math(nodes, links, "EXPONENT", -900, -1050, neg)))

    # Points mode: radius exp(max scale)
    s = [_named_float(nodes, f"scale_{c}", -1200, 300 + 120 * c) for c in range(3)]
    radius = _math(nodes, links, "EXPONENT", -700, 400,
                   _math(nodes, links, "MAXIMUM", -850, 400, _math(nodes, links, "MAXIMUM", -1000, 400, s[0], s[1]), s[2]))
    to_points = _node(nodes, "GeometryNodeMeshToPoints", -450, 200)
    links.new(g_in.outputs["Geometry"], to_points.inputs["Mesh"])
    links.new(radius, to_points.inputs["Radius"])
    pts = _store(nodes, links, to_points.outputs["Points"], COLOR_ATTR, "FLOAT_VECTOR", color.outputs[0], -200, 200)
    pts = _store(nodes, links, pts, ALPHA_ATTR, "FLOAT", alpha, 0, 200)
    pts = _store(nodes, links, pts, SIGMAS_ATTR, "FLOAT", 1.0, 200, 200)

    # Gaussians mode: an ellipsoid per point, rotated by the quaternion, scaled by Sigmas * exp(scale)
    scale = _node(nodes, "ShaderNodeCombineXYZ", -700, 0)
    for c in range(3):
        links.new(_math(nodes, links, "MULTIPLY", -850, -80 * c,
                        _math(nodes, links, "EXPONENT", -1000, -80 * c, s[c]), g_in.outputs[SIGMAS]), scale.inputs[c])
    quat = _node(nodes, "FunctionNodeQuaternionToRotation", -700, -250)
    for c, axis in enumerate("WXYZ"):
        links.new(_named_float(nodes, f"rot_{c}", -900, -250 - 60 * c), quat.inputs[axis])
    sphere = _node(nodes, "GeometryNodeMeshIcoSphere", -450, -400)
    sphere.inputs["Radius"].default_value = 1.0
    sphere.inputs["Subdivisions"].default_value = 2
    smooth = _node(nodes, "GeometryNodeSetShadeSmooth", -250, -400)
    links.new(sphere.outputs["Mesh"], smooth.inputs[0])
    cloud = _node(nodes, "GeometryNodeMeshToPoints", -450, -100)
    links.new(g_in.outputs["Geometry"], cloud.inputs["Mesh"])
    ell = _store(nodes, links, cloud.outputs["Points"], COLOR_ATTR, "FLOAT_VECTOR", color.outputs[0], -250, -100)
    ell = _store(nodes, links, ell, ALPHA_ATTR, "FLOAT", alpha, -50, -100)
    ell = _store(nodes, links, ell, SIGMAS_ATTR, "FLOAT", g_in.outputs[SIGMAS], 50, -100)
    inst = _node(nodes, "GeometryNodeInstanceOnPoints", 200, -100)
    links.new(ell, inst.inputs["Points"])
    links.new(smooth.outputs[0], inst.inputs["Instance"])
    links.new(quat.outputs[0], inst.inputs["Rotation"])
    links.new(scale.outputs[0], inst.inputs["Scale"])

    switch = _node(nodes, "GeometryNodeSwitch", 450, 0)
    switch.input_type = "GEOMETRY"
    links.new(g_in.outputs[POINTS], switch.inputs["Switch"])
    links.new(inst.outputs["Instances"], switch.inputs["False"])
    links.new(pts, switch.inputs["True"])
    set_mat = _node(nodes, "GeometryNodeSetMaterial", 700, 0)
    set_mat.inputs["Material"].default_value = ensure_material(bpy)
    links.new(switch.outputs[0], set_mat.inputs["Geometry"])
    links.new(set_mat.outputs["Geometry"], g_out.inputs["Geometry"])
    return group


def ensure_material(bpy):
    """A blended emissive material: colour and opacity from the display's attributes, faded towards
    each ellipsoid's outline like a Gaussian seen face-on."""
    mat = bpy.data.materials.get(MATERIAL_NAME)
    if mat is not None and mat.get(VERSION_KEY) == GROUP_VERSION:
        return mat
    if mat is None:
        mat = bpy.data.materials.new(MATERIAL_NAME)
    mat[VERSION_KEY] = GROUP_VERSION
    if hasattr(mat, "use_nodes") and not mat.use_nodes:
        mat.use_nodes = True
    if hasattr(mat, "surface_render_method"):  # EEVEE: sorted alpha blending
        mat.surface_render_method = "BLENDED"
    mat.use_backface_culling = True  # each ellipsoid blended once, front faces only
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    tree = mat.node_tree
    tree.nodes.clear()
    nodes, links = tree.nodes, tree.links

    def attribute(name: str, kind: str, y: float):
        node = _node(nodes, "ShaderNodeAttribute", -900, y)
        node.attribute_name = name
        node.attribute_type = kind
        return node

    # Gaussians mode stores on the instancer, Points mode on the points; the absent one reads zero.
    color = _node(nodes, "ShaderNodeVectorMath", -650, 200)
    color.operation = "ADD"
    links.new(attribute(COLOR_ATTR, "INSTANCER", 300).outputs["Vector"], color.inputs[0])
    links.new(attribute(COLOR_ATTR, "GEOMETRY", 150).outputs["Vector"], color.inputs[1])
    opacity = _math(nodes, links, "ADD", -650, -100, attribute(ALPHA_ATTR, "INSTANCER", 0).outputs["Fac"],
                    attribute(ALPHA_ATTR, "GEOMETRY", -150).outputs["Fac"])
    # Seen along the view ray, a sphere's |N·I| = sqrt(1 - r²): r² = 1 - (N·I)², Gaussian exp(-½ k² r²).
    facing = _node(nodes, "ShaderNodeLayerWeight", -900, -350)
    facing.inputs["Blend"].default_value = 0.5  # Facing = 1 - |N·I|
    cos = _math(nodes, links, "SUBTRACT", -700, -350, 1.0, facing.outputs["Facing"])
    r2 = _math(nodes, links, "SUBTRACT", -550, -350, 1.0, _math(nodes, links, "MULTIPLY", -600, -450, cos, cos))
    k = _math(nodes, links, "ADD", -650, -600, attribute(SIGMAS_ATTR, "INSTANCER", -550).outputs["Fac"],
              attribute(SIGMAS_ATTR, "GEOMETRY", -700).outputs["Fac"])
    half_k2 = _math(nodes, links, "MULTIPLY", -500, -600, _math(nodes, links, "MULTIPLY", -550, -650, k, k), -0.5)
    falloff = _math(nodes, links, "EXPONENT", -250, -350, _math(nodes, links, "MULTIPLY", -400, -350, r2, half_k2))
    fac = _math(nodes, links, "MINIMUM", -100, -200, _math(nodes, links, "MULTIPLY", -250, -150, opacity, falloff), 1.0)
    emit = _node(nodes, "ShaderNodeEmission", -100, 200)
    links.new(color.outputs[0], emit.inputs["Color"])
    clear = _node(nodes, "ShaderNodeBsdfTransparent", -100, 50)
    mix = _node(nodes, "ShaderNodeMixShader", 150, 100)
    links.new(fac, mix.inputs["Fac"])
    links.new(clear.outputs[0], mix.inputs[1])
    links.new(emit.outputs[0], mix.inputs[2])
    out = _node(nodes, "ShaderNodeOutputMaterial", 350, 100)
    links.new(mix.outputs[0], out.inputs["Surface"])
    return mat


def add_display(bpy, obj, points: bool | None = None):
    """Add (once) the display modifier to a splat object. ``points`` picks the mode; None keeps the
    modifier's mode, or for a new one picks Points above ``POINT_MODE_ABOVE`` Gaussians."""
    mod = obj.modifiers.get(MODIFIER_NAME)
    new = mod is None
    if new:
        mod = obj.modifiers.new(MODIFIER_NAME, "NODES")
    mod.node_group = ensure_node_group(bpy)
    if points is None and new:
        points = len(obj.data.vertices) > POINT_MODE_ABOVE
    if points is not None:
        mod[socket_id(mod.node_group, POINTS)] = bool(points)
        obj.update_tag()
    return mod
