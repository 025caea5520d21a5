"""The object's world orientation on the wire: the worker sees the splat as the artist sees it.

The worker's world is Blender's (+Z up, the front camera on -Y), and prompts name directions in it
("jumps", "spins", "slides left"). A splat whose object is rotated (a Y-up capture stood upright in
Blender, a parented prop) is therefore sent turned by the object's world rotation, and the
animation that comes back is turned back into the mesh's own frame before it is written:

- sent:  ``x' = R x``, ``q' = r ⊗ q`` (log-scales unchanged);
- back:  ``dx = Rᵀ dx'``, ``dq = r⁻¹ ⊗ dq' ⊗ r`` (log-scale deltas unchanged: they act along each
  Gaussian's own axes).

Translation needs nothing (the worker normalises the splat into its canonical box and maps the
result back), and neither does a uniform scale. A non-uniform object scale is not applied: the motion
is computed on the shape as its mesh stores it, turned the object's way.
"""

from __future__ import annotations

import numpy as np

from .animus3d_shared.deformation import Animation, quat_multiply, quat_normalise, quat_to_matrix
from .animus3d_shared.splat import GaussianSplat

IDENTITY = (1.0, 0.0, 0.0, 0.0)


def is_identity(rotation) -> bool:
    q = quat_normalise(np.asarray(rotation, dtype=np.float64))
    return abs(abs(float(q[0])) - 1.0) < 1e-7


def splat_to_world(splat: GaussianSplat, rotation) -> GaussianSplat:
    """The splat turned by the object's world rotation ``(w, x, y, z)``."""
    if is_identity(rotation):
        return splat
    r = quat_normalise(np.asarray(rotation, dtype=np.float64))
    means = splat.means.astype(np.float64) @ quat_to_matrix(r).T
    quats = quat_multiply(r[None, :], splat.quats.astype(np.float64))
    return splat.with_arrays(means=means.astype(np.float32), quats=quats.astype(np.float32))


def animation_to_object(anim: Animation, rotation) -> Animation:
    """An animation computed on the turned splat, expressed in the mesh's own frame."""
    if is_identity(rotation):
        return anim
    r = quat_normalise(np.asarray(rotation, dtype=np.float64))
    r_inv = r * np.array([1.0, -1.0, -1.0, -1.0])
    dp = anim.delta_position.astype(np.float64) @ quat_to_matrix(r)  # Rᵀ applied to row vectors
    dq = quat_multiply(quat_multiply(r_inv, anim.delta_rotation.astype(np.float64)), r)
    return Animation(dp.astype(np.float32), quat_normalise(dq).astype(np.float32),
                     anim.delta_scale, anim.fps)


def world_rotation(obj) -> tuple[float, float, float, float]:
    """The rotation part of the object's world matrix (parents included), as (w, x, y, z)."""
    _loc, rot, _scale = obj.matrix_world.decompose()
    return (float(rot.w), float(rot.x), float(rot.y), float(rot.z))
