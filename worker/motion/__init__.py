"""The motion field (HexPlane + MLP heads) and its regularisers (ARAP, TV-3D).

```python
field = MotionField(bbox_min, bbox_max, resolution=32, levels=2, time_resolution=16)
dpos, dquat, dlogscale = field(means, times)          # exact identity at t = 0
means_t, quats_t, log_scales_t = apply_motion(means, quats, log_scales, dpos, dquat, dlogscale)
graph = knn_graph(rest_means, k=8)                     # once
loss = arap_loss(rest_means, means_t, graph, sample=20_000) + tv3d_loss(dpos, dquat, dlogscale)
```
"""

from .field import MotionField, apply_motion, frame_times
from .hexplane import HexPlane
from .quaternion import (
    MotionInputError,
    quat_from_axis_angle,
    quat_identity,
    quat_multiply,
    quat_normalise,
    quat_to_matrix,
)
from .regularizers import KnnGraph, arap_loss, knn_graph, tv3d_loss

__all__ = [
    "HexPlane",
    "KnnGraph",
    "MotionField",
    "MotionInputError",
    "apply_motion",
    "arap_loss",
    "frame_times",
    "knn_graph",
    "quat_from_axis_angle",
    "quat_identity",
    "quat_multiply",
    "quat_normalise",
    "quat_to_matrix",
    "tv3d_loss",
]
