"""Geometry-node groups the add-on builds into a file, rebuilt when the add-on's version of them changes."""

from __future__ import annotations

VERSION_KEY = "animus3d_version"


def versioned_group(bpy, name: str, version: int):
    """(group, current): the file's node group ``name``; ``current`` when it is already of ``version``.
    Otherwise the group is created, or emptied of nodes and sockets, and stamped with ``version`` for
    the caller to build (modifiers that use it keep pointing at it)."""
    group = bpy.data.node_groups.get(name)
    if group is not None and group.get(VERSION_KEY) == version:
        return group, True
    if group is None:
        group = bpy.data.node_groups.new(name, "GeometryNodeTree")
    else:
        group.nodes.clear()
        group.interface.clear()
    group[VERSION_KEY] = version
    return group, False


def socket_id(group, name: str) -> str:
    """The identifier of the group's interface socket ``name`` (the key of a modifier's input)."""
    return group.interface.items_tree[name].identifier
