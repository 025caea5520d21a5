"""Regularisers of the motion: a k-nearest-neighbour graph, ARAP rigidity and TV-3D smoothness.

- :func:`knn_graph` builds, once, each rest Gaussian's k nearest neighbours with Gaussian
  weights (exact; a Morton-ordered, chunked search that scales to hundreds of thousands of
  points on CPU or GPU).
- :func:`arap_loss` is classic as-rigid-as-possible energy: each anchor's best-fit rotation
  (weighted Procrustes, detached as in the local/global solver) and the weighted residual of
  its deformed edges against the rotated rest edges.
- :func:`tv3d_loss` penalises temporal acceleration (second differences over frames, and the
  change of frame-to-frame rotation increments).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .quaternion import MotionInputError, quat_multiply, quat_normalise

_CHUNK_ELEMENTS = 1 << 25  # largest [queries × candidates] distance block (128 MiB float32)


class KnnGraph(NamedTuple):
    """Each point's k nearest other points and their row-normalised weights."""

    indices: torch.Tensor  # [N, k] long
    weights: torch.Tensor  # [N, k] float, rows sum to 1


def _check_points(name: str, points, leading: int) -> None:
    shape = "[T, N, 3]" if leading == 2 else "[N, 3]"
    if not isinstance(points, torch.Tensor) or points.ndim != leading + 1 or points.shape[-1] != 3:
        got = list(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise MotionInputError(f"{name} must be a {shape} tensor, got {got}")
    if not points.is_floating_point():
        raise MotionInputError(f"{name} must be a floating-point tensor, got {points.dtype}")


# ---- k-nearest neighbours --------------------------------------------------------------------


def knn_graph(rest_means: torch.Tensor, k: int = 8, *, chunk_size: int = 256) -> KnnGraph:
    """The k nearest neighbours (self excluded) of every point, with Gaussian weights.

    Weights are ``exp(-d²/(2σ²))`` normalised per row, σ the median neighbour distance.
    Exact: queries are processed in Morton order in chunks; each chunk compares against the
    points inside its bounding box grown by a search radius, and queries whose k-th neighbour
    lies beyond that radius are retried with a doubled radius.

    Args:
        rest_means: [N, 3] rest positions, N > k. Runs on their device; no gradient.
        k: neighbours per point.
        chunk_size: queries per chunk (memory is bounded whatever the value).
    """
    _check_points("rest_means", rest_means, 1)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise MotionInputError(f"k must be a positive integer, got {k!r}")
    n = rest_means.shape[0]
    if n <= k:
        raise MotionInputError(f"knn_graph needs more than k={k} points, got {n}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise MotionInputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    with torch.no_grad():
        points = rest_means.detach().double()
        if not bool(torch.isfinite(points).all()):
            raise MotionInputError("rest_means contains NaN or infinite values")
        # Search in the unit box (float64 maths): squared distances of any finite input stay finite in
        # float32, and the weights below depend only on ratios of distances.
        low = points.amin(0)
        extent = float((points.amax(0) - low).max())
        points = ((points - low) / extent if extent > 0 else points - low).float()
        indices, distances = _exact_knn(points, k, chunk_size)
        sigma = distances.median()
        if sigma <= 0:  # mostly duplicated points: fall back to the mean, then to 1
            sigma = distances.mean() if distances.mean() > 0 else distances.new_tensor(1.0)
        weights = torch.softmax(-distances.square() / (2.0 * sigma.square()), dim=1)
    return KnnGraph(indices, weights)


def _exact_knn(points: torch.Tensor, k: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = points.shape[0]
    indices = torch.empty(n, k, dtype=torch.long, device=points.device)
    distances = torch.empty(n, k, dtype=points.dtype, device=points.device)
    extent = float((points.amax(0) - points.amin(0)).max())
    radius = max(_typical_kth_distance(points, k), 1e-6 * extent, 1e-12)
    by_x = _SortedByX(points)
    pending = _morton_order(points)
    while pending.numel() > 0:
        unresolved = []
        for start in range(0, pending.numel(), chunk_size):
            unresolved += _knn_chunk(by_x, pending[start : start + chunk_size], k, radius, indices, distances)
        pending = torch.cat(unresolved) if unresolved else pending[:0]
        if radius > 4.0 * max(extent, 1e-30):  # the box held every point: nothing can be left unresolved
            raise MotionInputError(f"neighbour search did not converge for {pending.numel()} point(s)")
        radius *= 2.0
    return indices, distances


class _SortedByX:
    """Points with an index sorted by x, to find those in a box without scanning them all."""

    def __init__(self, points: torch.Tensor) -> None:
        self.points = points
        self.x, self.order = points[:, 0].sort()

    def in_box(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """Sorted indices of the points inside [low, high] (inclusive)."""
        first = int(torch.searchsorted(self.x, low[:1]))
        last = int(torch.searchsorted(self.x, high[:1], right=True))
        slab = self.order[first:last]
        yz = self.points[slab, 1:]
        inside = ((yz >= low[1:]) & (yz <= high[1:])).all(dim=1)
        return slab[inside].sort().values


def _knn_chunk(by_x: _SortedByX, queries, k, radius, out_indices, out_distances) -> list[torch.Tensor]:
    """Solve what it can for one chunk of query indices; return the unresolved queries."""
    points = by_x.points
    n = points.shape[0]
    q = points[queries]
    candidates = by_x.in_box(q.amin(0) - radius, q.amax(0) + radius)
    if queries.numel() > 1 and queries.numel() * candidates.numel() > _CHUNK_ELEMENTS:
        half = queries.numel() // 2  # a tighter box for each half
        return _knn_chunk(by_x, queries[:half], k, radius, out_indices, out_distances) + _knn_chunk(
            by_x, queries[half:], k, radius, out_indices, out_distances
        )
    if candidates.numel() <= k:
        return [queries]
    centre = q.mean(dim=0)  # local coordinates keep the matmul-based cdist accurate
    dist = torch.cdist(q - centre, points[candidates] - centre)
    self_column = torch.searchsorted(candidates, queries)
    dist[torch.arange(queries.numel(), device=dist.device), self_column] = float("inf")
    neighbours = candidates[dist.topk(k, dim=1, largest=False).indices]
    exact = (points[neighbours] - q.unsqueeze(1)).norm(dim=-1)
    exact, order = exact.sort(dim=1)
    neighbours = neighbours.gather(1, order)
    if candidates.numel() == n:
        solved = torch.ones(queries.numel(), dtype=torch.bool, device=points.device)
    else:
        solved = exact[:, -1] <= radius  # every closer point lies inside the searched box
    out_indices[queries[solved]] = neighbours[solved]
    out_distances[queries[solved]] = exact[solved]
    rest = queries[~solved]
    return [rest] if rest.numel() else []


def _typical_kth_distance(points: torch.Tensor, k: int, samples: int = 128) -> float:
    """90th percentile of the k-th neighbour distance over a fixed random sample of points."""
    n = points.shape[0]
    generator = torch.Generator().manual_seed(0)
    pick = torch.randperm(n, generator=generator)[: min(n, samples)].to(points.device)
    centre = points.mean(dim=0)
    dist = torch.cdist(points[pick] - centre, points - centre)
    kth = dist.topk(k + 1, dim=1, largest=False).values[:, -1]  # k+1: the point itself is one
    return float(kth.quantile(0.9))


def _morton_order(points: torch.Tensor) -> torch.Tensor:
    """Indices sorting points along a 3D Z-order curve (10 bits per axis)."""
    low = points.amin(0)
    span = (points.amax(0) - low).max().clamp_min(1e-30)
    cells = ((points - low) / span * 1023.0).long().clamp(0, 1023)
    code = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    for axis in range(3):
        code |= _spread_bits(cells[:, axis]) << axis
    return torch.argsort(code)


def _spread_bits(v: torch.Tensor) -> torch.Tensor:
    """Insert two zero bits between each of the low 10 bits of v."""
    v = v & 0x3FF
    v = (v | (v << 16)) & 0x030000FF
    v = (v | (v << 8)) & 0x0300F00F
    v = (v | (v << 4)) & 0x030C30C3
    v = (v | (v << 2)) & 0x09249249
    return v


# ---- ARAP -------------------------------------------------------------------------------------


def arap_loss(
    rest_means: torch.Tensor,
    deformed_means: torch.Tensor,
    graph: KnnGraph,
    sample: int | None = None,
    *,
    normalise: bool = True,
    uniform_scale: bool = False,
) -> torch.Tensor:
    """As-rigid-as-possible energy of deformed frames against the rest splat.

    For each anchor i and frame t, ``R_i`` is the rotation best mapping rest edges
    ``x_j − x_i`` onto deformed edges ``x'_j − x'_i`` (weighted Procrustes by SVD, reflections
    excluded, detached); the energy is ``Σ_j w_ij ‖(x'_j − x'_i) − R_i (x_j − x_i)‖²`` averaged
    over anchors and frames. Zero for any rigid motion of the whole splat.

    Args:
        rest_means: [N, 3]; deformed_means: [T, N, 3]; graph: from :func:`knn_graph` on rest_means.
        sample: if given and < N, a random subset of this many anchors (fresh each call).
        normalise: divide by the mean weighted squared rest edge length, so the value is
            dimensionless (independent of the asset's size). False gives world units².
        uniform_scale: compare each frame's edges with the rest edges scaled by that frame's overall
            edge-length ratio ``s_t`` (``‖(x'_j − x'_i) − s_t R_i (x_j − x_i)‖²``): the whole object
            growing or shrinking evenly costs nothing, uneven stretching still does (as-similar-as-
            possible for the whole, as-rigid-as-possible locally).
    """
    _check_points("rest_means", rest_means, 1)
    _check_points("deformed_means", deformed_means, 2)
    n = rest_means.shape[0]
    if deformed_means.shape[1] != n:
        raise MotionInputError(f"deformed_means has {deformed_means.shape[1]} Gaussians, rest_means {n}")
    if graph.indices.ndim != 2 or graph.indices.shape[0] != n or graph.weights.shape != graph.indices.shape:
        raise MotionInputError(f"graph does not match {n} Gaussians (indices {list(graph.indices.shape)})")
    if sample is not None and (not isinstance(sample, int) or sample < 1):
        raise MotionInputError(f"sample must be a positive integer or None, got {sample!r}")

    rest = rest_means.float()
    deformed = deformed_means.float()
    indices, weights = graph.indices.to(rest.device), graph.weights.to(rest.device, torch.float32)
    if sample is not None and sample < n:
        anchors = torch.randperm(n, device=rest.device)[:sample]
        indices, weights = indices[anchors], weights[anchors]
    else:
        anchors = torch.arange(n, device=rest.device)

    rest_edges = rest[indices] - rest[anchors].unsqueeze(1)  # [S, k, 3]
    deformed_edges = deformed[:, indices] - deformed[:, anchors].unsqueeze(2)  # [T, S, k, 3]
    rotations = _best_fit_rotations(rest_edges, deformed_edges.detach(), weights)  # [T, S, 3, 3]
    rotated = torch.einsum("tsab,skb->tska", rotations, rest_edges)
    rest_lengths = (rest_edges.square().sum(-1) * weights).sum(-1)  # [S] weighted squared edge lengths
    if uniform_scale:
        deformed_length = (deformed_edges.square().sum(-1) * weights).sum((-1, -2))  # [T]
        rotated = rotated * (deformed_length / rest_lengths.sum().clamp_min(1e-30)).sqrt().reshape(-1, 1, 1, 1)
    energy = ((deformed_edges - rotated).square().sum(-1) * weights).sum(-1).mean()
    if normalise:
        energy = energy / rest_lengths.mean().detach().clamp_min(1e-30)
    return energy


def _best_fit_rotations(rest_edges, deformed_edges, weights) -> torch.Tensor:
    """Rotations R (det +1) minimising Σ_j w_j ‖d_j − R r_j‖², batched over [T, S]."""
    with torch.no_grad():
        covariance = torch.einsum("sk,ska,tskb->tsab", weights, rest_edges, deformed_edges)
        u, _, vh = torch.linalg.svd(covariance)
        v = vh.transpose(-1, -2)
        flip = torch.linalg.det(v @ u.transpose(-1, -2)) < 0
        # Reflection: negate the singular vector of the smallest singular value.
        v[..., :, 2] = torch.where(flip.unsqueeze(-1), -v[..., :, 2], v[..., :, 2])
        return v @ u.transpose(-1, -2)


# ---- TV-3D ------------------------------------------------------------------------------------


def tv3d_loss(
    dpos: torch.Tensor,
    dquat: torch.Tensor | None = None,
    dlogscale: torch.Tensor | None = None,
    *,
    position_scale: float | None = None,
) -> torch.Tensor:
    """Temporal smoothness: mean squared second difference over frames (0 for constant velocity).

    Positions and log-scales contribute ``mean over (t, i) of ‖δ[t+1] − 2δ[t] + δ[t−1]‖²``;
    rotations contribute the mean squared change of the frame-to-frame rotation increment
    ``dq[t+1] ⊗ dq[t]⁻¹`` (zero for a constant angular velocity, blind to q versus −q). Assumes
    evenly spaced frames. Fewer than three frames give 0.

    Args:
        dpos: [T, N, 3]; dquat: [T, N, 4] or None; dlogscale: [T, N, 3] or None.
        position_scale: if given, dpos is divided by it (pass ``field.position_scale`` to make
            the position term independent of the asset's size).
    """
    _check_points("dpos", dpos, 2)
    frames, n = dpos.shape[:2]
    for name, tensor, width in (("dquat", dquat, 4), ("dlogscale", dlogscale, 3)):
        if tensor is not None and (
            not isinstance(tensor, torch.Tensor) or tensor.ndim != 3 or tuple(tensor.shape) != (frames, n, width)
        ):
            got = list(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise MotionInputError(f"{name} must have shape [{frames}, {n}, {width}], got {got}")
    if position_scale is not None:
        dpos = dpos / position_scale
    total = (dpos * 0).sum()
    if frames < 3:
        return total
    total = total + _mean_squared_acceleration(dpos)
    if dquat is not None:
        total = total + _rotation_acceleration(dquat)
    if dlogscale is not None:
        total = total + _mean_squared_acceleration(dlogscale)
    return total


def _mean_squared_acceleration(x: torch.Tensor) -> torch.Tensor:
    second = x[2:] - 2.0 * x[1:-1] + x[:-2]
    return second.square().sum(-1).mean()


def _rotation_acceleration(q: torch.Tensor) -> torch.Tensor:
    """Mean squared change of the per-frame rotation increment ``q[t+1] ⊗ q[t]⁻¹``.

    Zero for a constant angular velocity (about a fixed axis); the increments are put in the
    w ≥ 0 hemisphere first, so q and −q (the same rotation) are treated alike.
    """
    q = quat_normalise(q)
    inverse = torch.cat([q[..., :1], -q[..., 1:]], dim=-1)  # conjugate, without a host constant
    increments = quat_multiply(q[1:], inverse[:-1])
    with torch.no_grad():
        sign = torch.where(increments[..., :1] < 0, -1.0, 1.0).to(q.dtype)
    increments = increments * sign
    return (increments[1:] - increments[:-1]).square().sum(-1).mean()
