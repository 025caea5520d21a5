"""Gaussian splats as Blender meshes: one vertex per Gaussian, FLOAT point attributes.

The attribute names are the INRIA 3DGS PLY property names (``f_dc_0..2``, ``f_rest_*``,
``opacity``, ``scale_0..2``, ``rot_0..3``), the same ones Blender's own PLY importer and KIRI's
3DGS Render add-on use, so any mesh carrying them is a valid splat here and ours work there.

The mesh always holds the original splat; an animation changes only the evaluated geometry (the
motion modifier, :mod:`.motion`).
"""

from __future__ import annotations

import numpy as np

from .animus3d_shared.splat import GaussianSplat

REQUIRED = ("f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


class SplatMeshError(ValueError):
    """A mesh is not a Gaussian splat (attributes missing or of the wrong kind)."""


def standard_columns(splat: GaussianSplat) -> dict[str, np.ndarray]:
    """The splat as PLY-named float32 columns, in PLY property order."""
    cols: dict[str, np.ndarray] = {}
    for c in range(3):
        cols[f"f_dc_{c}"] = splat.sh_dc[:, c]
    k = splat.sh_rest.shape[1]
    for c in range(3):
        for j in range(k):
            cols[f"f_rest_{c * k + j}"] = splat.sh_rest[:, j, c]
    cols["opacity"] = splat.opacity_logits
    for c in range(3):
        cols[f"scale_{c}"] = splat.log_scales[:, c]
    for c in range(4):
        cols[f"rot_{c}"] = splat.quats[:, c]
    return {name: np.ascontiguousarray(v, dtype=np.float32) for name, v in cols.items()}


def set_float_attribute(mesh, name: str, values: np.ndarray) -> None:
    """Create or overwrite a FLOAT point attribute."""
    attr = mesh.attributes.get(name)
    if attr is not None and (attr.data_type != "FLOAT" or attr.domain != "POINT"):
        mesh.attributes.remove(attr)
        attr = None
    if attr is None:
        attr = mesh.attributes.new(name, "FLOAT", "POINT")
    attr.data.foreach_set("value", np.ascontiguousarray(values, dtype=np.float32))


def get_float_attribute(mesh, name: str) -> np.ndarray:
    attr = mesh.attributes.get(name)
    if attr is None:
        raise SplatMeshError(f"mesh {mesh.name!r} has no attribute {name!r}")
    if attr.domain != "POINT" or attr.data_type != "FLOAT":
        raise SplatMeshError(f"attribute {name!r} of {mesh.name!r} must be a FLOAT point attribute")
    out = np.empty(len(mesh.vertices), np.float32)
    attr.data.foreach_get("value", out)
    return out


def set_vector_attribute(mesh, name: str, data_type: str, values: np.ndarray) -> None:
    """Create or overwrite a FLOAT_VECTOR (N×3) or QUATERNION (N×4) point attribute."""
    attr = mesh.attributes.get(name)
    if attr is not None and (attr.data_type != data_type or attr.domain != "POINT"):
        mesh.attributes.remove(attr)
        attr = None
    if attr is None:
        attr = mesh.attributes.new(name, data_type, "POINT")
    key = "value" if data_type == "QUATERNION" else "vector"
    attr.data.foreach_set(key, np.ascontiguousarray(values, dtype=np.float32).ravel())


def get_vector_attribute(mesh, name: str, width: int) -> np.ndarray:
    attr = mesh.attributes[name]
    out = np.empty(len(mesh.vertices) * width, np.float32)
    attr.data.foreach_get("value" if attr.data_type == "QUATERNION" else "vector", out)
    return out.reshape(-1, width)


def get_positions(mesh) -> np.ndarray:
    """Rest positions [N, 3] (the Basis shape key when shape keys exist)."""
    n = len(mesh.vertices)
    out = np.empty(n * 3, np.float32)
    keys = mesh.shape_keys
    if keys is not None and keys.reference_key is not None:
        key_points(keys.reference_key).foreach_get("co", out)
    else:
        mesh.attributes["position"].data.foreach_get("vector", out)
    return out.reshape(n, 3)


def key_points(key_block):
    """A shape key's point collection: ``points`` (fast, 4.x+) or ``data``."""
    return key_block.points if hasattr(key_block, "points") else key_block.data


def is_splat_mesh(obj) -> bool:
    """True for a mesh object whose mesh carries every required 3DGS attribute on its points."""
    if obj is None or obj.type != "MESH":
        return False
    attrs = obj.data.attributes
    return all(name in attrs and attrs[name].domain == "POINT" for name in REQUIRED)


def mesh_from_splat(bpy, splat: GaussianSplat, name: str):
    """A new mesh with one vertex per Gaussian and the standard 3DGS attributes."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(splat.count)
    mesh.attributes["position"].data.foreach_set("vector", np.ascontiguousarray(splat.means, np.float32).ravel())
    for col, values in standard_columns(splat).items():
        set_float_attribute(mesh, col, values)
    mesh.update()
    return mesh


def splat_from_mesh(mesh) -> GaussianSplat:
    """Read a splat back from a mesh with the standard attributes (any importer's)."""
    missing = [n for n in REQUIRED if n not in mesh.attributes]
    if missing:
        raise SplatMeshError(f"mesh {mesh.name!r} is not a Gaussian splat: missing attribute(s) {', '.join(missing)}")
    off_points = [n for n in REQUIRED if mesh.attributes[n].domain != "POINT"]
    if off_points:
        raise SplatMeshError(f"mesh {mesh.name!r} stores {', '.join(off_points)} on the "
                             f"{mesh.attributes[off_points[0]].domain.lower()} domain; a splat needs them per point (vertex)")
    n = len(mesh.vertices)
    if n == 0:
        raise SplatMeshError(f"mesh {mesh.name!r} has no vertices")
    rest_names = sorted((a.name for a in mesh.attributes if a.name.startswith("f_rest_")), key=lambda s: int(s[7:]))
    if len(rest_names) % 3 or len(rest_names) // 3 not in (0, 3, 8, 15):
        raise SplatMeshError(f"mesh {mesh.name!r} has {len(rest_names)} f_rest attributes; expected 0, 9, 24 or 45")
    k = len(rest_names) // 3
    sh_rest = np.empty((n, k, 3), np.float32)
    for c in range(3):
        for j in range(k):
            sh_rest[:, j, c] = get_float_attribute(mesh, f"f_rest_{c * k + j}")
    quats = np.stack([get_float_attribute(mesh, f"rot_{c}") for c in range(4)], axis=1)
    log_scales = np.stack([get_float_attribute(mesh, f"scale_{c}") for c in range(3)], axis=1)
    return GaussianSplat(
        means=get_positions(mesh),
        quats=np.ascontiguousarray(quats, np.float32),
        log_scales=np.ascontiguousarray(log_scales, np.float32),
        opacity_logits=get_float_attribute(mesh, "opacity"),
        sh_dc=np.stack([get_float_attribute(mesh, f"f_dc_{c}") for c in range(3)], axis=1),
        sh_rest=sh_rest,
    )


def splat_from_object(obj) -> GaussianSplat:
    """The splat of a mesh object: its rest state in the mesh's own frame (``orientation`` turns it)."""
    if obj is None or obj.type != "MESH":
        raise SplatMeshError("select a mesh object carrying Gaussian-splat attributes")
    return splat_from_mesh(obj.data)
