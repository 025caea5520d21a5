"""PLY import into a splat object and per-frame PLY export of a baked animation."""

from __future__ import annotations

import os

import numpy as np

from .animus3d_shared import ply
from .animus3d_shared.splat import GaussianSplat
from .bake import PROP_START, baked_frames, pos_attr, rot_attr, scale_attr
from .display import add_display
from .splat_mesh import get_vector_attribute, mesh_from_splat, splat_from_mesh


class ExportError(ValueError):
    """The object has no baked animation to export."""


def import_splat(bpy, context, splat: GaussianSplat, name: str, display: bool = True):
    """Create a splat object in the active collection, select it and make it active."""
    mesh = mesh_from_splat(bpy, splat, name)
    obj = bpy.data.objects.new(name, mesh)
    collection = context.collection if context.collection is not None else context.scene.collection
    collection.objects.link(obj)
    if display:
        add_display(bpy, obj)
    for other in context.view_layer.objects:
        if other is not None:
            other.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
    return obj


def import_ply_file(bpy, context, filepath: str, display: bool = True):
    """Read an INRIA 3DGS PLY and create its object (raises ply.PlyError on a bad file)."""
    splat = ply.read_ply(filepath)
    name = os.path.splitext(os.path.basename(filepath))[0] or "Splat"
    return import_splat(bpy, context, splat, name, display)


def frame_splat(obj, t: int, base: GaussianSplat | None = None) -> GaussianSplat:
    """The full splat of baked frame ``t`` (positions, rotations and scales of that frame)."""
    mesh = obj.data
    base = base if base is not None else splat_from_mesh(mesh)
    if any(name(t) not in mesh.attributes for name in (pos_attr, rot_attr, scale_attr)):
        raise ExportError(f"{obj.name!r} has no baked frame {t}")
    means = get_vector_attribute(mesh, pos_attr(t), 3)
    quats = get_vector_attribute(mesh, rot_attr(t), 4)
    scales = get_vector_attribute(mesh, scale_attr(t), 3)
    return base.with_arrays(means=means, quats=quats, log_scales=scales)


def export_ply_sequence(obj, directory: str) -> list[str]:
    """Write one full 3DGS PLY per baked frame, named by the scene frame it plays on
    (``frame_0001.ply`` … for a bake starting on frame 1); returns the paths."""
    frames = baked_frames(obj)
    if frames <= 0:
        raise ExportError(f"{obj.name!r} has no baked animation; animate it first")
    os.makedirs(directory, exist_ok=True)
    base = splat_from_mesh(obj.data)
    start = int(obj.get(PROP_START, 1))
    paths = []
    for t in range(frames):
        path = os.path.join(directory, f"frame_{start + t:04d}.ply")
        ply.write_ply(path, frame_splat(obj, t, base))
        paths.append(path)
    return paths
