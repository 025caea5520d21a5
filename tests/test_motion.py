"""Motion field (HexPlane + heads), apply_motion, kNN graph, ARAP and TV-3D."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from animus3d_shared import deformation
from animus3d_worker.motion import (
    HexPlane,
    KnnGraph,
    MotionField,
    MotionInputError,
    apply_motion,
    arap_loss,
    frame_times,
    knn_graph,
    quat_from_axis_angle,
    quat_multiply,
    quat_normalise,
    quat_to_matrix,
    tv3d_loss,
)

IDENTITY_QUAT = torch.tensor([1.0, 0.0, 0.0, 0.0])


def _random_rotation(generator: torch.Generator) -> torch.Tensor:
    q = quat_normalise(torch.randn(4, generator=generator, dtype=torch.float64))
    return quat_to_matrix(q)


def _perturb(field: MotionField, scale: float = 0.3, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in field.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


@pytest.fixture
def cloud() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(400, 3, generator=generator) * torch.tensor([2.0, 1.0, 3.0]) - 0.5


# ---- quaternions ------------------------------------------------------------------------------


def test_quat_multiply_matches_shared_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 7, 4)), rng.normal(size=(7, 4))
    expected = deformation.quat_multiply(a, b)
    got = quat_multiply(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_quat_to_matrix_matches_shared_numpy_and_is_orthonormal():
    q = np.random.default_rng(4).normal(size=(50, 4))
    got = quat_to_matrix(torch.from_numpy(q))
    np.testing.assert_allclose(got.numpy(), deformation.quat_to_matrix(q), atol=1e-12)
    eye = got @ got.transpose(-1, -2)
    assert torch.allclose(eye, torch.eye(3, dtype=eye.dtype).expand_as(eye), atol=1e-12)


def test_quat_from_axis_angle_rotates_by_the_angle_about_the_axis():
    rotvec = torch.tensor([[0.0, 0.0, math.pi / 2], [0.0, 0.0, 0.0], [1e-6, 0.0, 0.0]], dtype=torch.float64)
    q = quat_from_axis_angle(rotvec)
    assert torch.equal(q[1], IDENTITY_QUAT.double())  # exact at zero
    rotated = quat_to_matrix(q[0]) @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(rotated, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(q.norm(dim=-1), torch.ones(3, dtype=torch.float64))
    # Gradients are finite at zero and near it.
    rotvec = torch.zeros(2, 3, requires_grad=True)
    quat_from_axis_angle(rotvec).sum().backward()
    assert torch.isfinite(rotvec.grad).all()


def test_quaternion_helpers_reject_wrong_widths():
    with pytest.raises(MotionInputError, match=r"\[\.\.\., 4\]"):
        quat_multiply(torch.zeros(3), torch.zeros(4))
    with pytest.raises(MotionInputError):
        quat_from_axis_angle(torch.zeros(2, 4))


# ---- HexPlane ---------------------------------------------------------------------------------


def test_hexplane_output_shape_and_initial_time_independence():
    torch.manual_seed(0)
    planes = HexPlane(feature_dim=8, resolution=8, levels=3, time_resolution=5)
    coords = torch.rand(20, 3) * 2 - 1
    features = planes(coords, torch.tensor([-1.0, 0.3, 1.0]))
    assert features.shape == (3, 20, 24)
    assert planes.resolutions == (8, 16, 32)
    # Time planes start at 1, so the features do not depend on time yet (up to interpolation rounding).
    assert torch.allclose(features[0], features[1], atol=1e-6) and torch.allclose(features[0], features[2], atol=1e-6)
    # Spatial planes start near 1, not at a constant: points are distinguishable.
    assert 0.0 < (features[0] - 1).abs().max() < 1.0


def test_hexplane_rejects_bad_sizes():
    with pytest.raises(MotionInputError, match="resolution"):
        HexPlane(resolution=1)
    with pytest.raises(MotionInputError, match="levels"):
        HexPlane(levels=0)


# ---- motion field -----------------------------------------------------------------------------


def _field_for(points: torch.Tensor, **kwargs) -> MotionField:
    return MotionField(points.amin(0), points.amax(0), resolution=8, levels=2, time_resolution=6, **kwargs)


def test_field_output_shapes_and_identity_everywhere_at_init(cloud):
    field = _field_for(cloud)
    dpos, dquat, dlogscale = field(cloud, frame_times(5))
    assert dpos.shape == (5, 400, 3) and dquat.shape == (5, 400, 4) and dlogscale.shape == (5, 400, 3)
    assert torch.equal(dpos, torch.zeros_like(dpos))
    assert torch.equal(dlogscale, torch.zeros_like(dlogscale))
    assert torch.equal(dquat, IDENTITY_QUAT.expand_as(dquat))


def test_frame_zero_is_exactly_identity_after_random_weights(cloud):
    field = _field_for(cloud)
    _perturb(field)
    times = torch.tensor([0.0, 0.25, 0.0, 1.0])
    dpos, dquat, dlogscale = field(cloud, times)
    for frame in (0, 2):
        assert torch.equal(dpos[frame], torch.zeros(400, 3))
        assert torch.equal(dlogscale[frame], torch.zeros(400, 3))
        assert torch.equal(dquat[frame], IDENTITY_QUAT.expand(400, 4))
    # ...while the other frames really move, with unit rotations.
    assert dpos[1].abs().mean() > 1e-3 and dpos[3].abs().mean() > 1e-3
    assert dquat[3][:, 1:].abs().mean() > 1e-3 and dlogscale[3].abs().mean() > 1e-3
    assert torch.allclose(dquat.norm(dim=-1), torch.ones(4, 400), atol=1e-6)
    # Frame 0 deforms the input into itself, bit for bit (quats already unit).
    quats = quat_normalise(torch.randn(400, 4, dtype=torch.float64)).float()
    log_scales = torch.randn(400, 3)
    means_t, quats_t, log_scales_t = apply_motion(cloud, quats, log_scales, dpos, dquat, dlogscale)
    assert torch.equal(means_t[0], cloud) and torch.equal(log_scales_t[0], log_scales)
    assert torch.allclose(quats_t[0], quats, atol=1e-7)


def test_field_is_continuous_in_time_between_training_frames(cloud):
    field = _field_for(cloud)
    _perturb(field)
    times = torch.tensor([0.3, 0.3 + 1e-4, 0.5, 0.6])
    dpos, dquat, dlogscale = field(cloud, times)
    step = (dpos[0] - dpos[1]).abs().max()
    assert step < 1e-2 * (dpos[0] - dpos[3]).abs().max()
    assert (dquat[0] - dquat[1]).abs().max() < 1e-2 and (dlogscale[0] - dlogscale[1]).abs().max() < 1e-2
    # A query between frames is a new value, not a copy of a neighbour frame.
    dense = field(cloud, frame_times(13))[0]
    coarse = field(cloud, frame_times(4))[0]
    assert torch.allclose(dense[::4], coarse, atol=1e-5)
    assert not torch.allclose(dense[1], dense[0]) and not torch.allclose(dense[1], dense[4])


def test_gradients_reach_planes_and_mlp(cloud):
    field = _field_for(cloud)
    for head in (field.position_head, field.rotation_head, field.scale_head):
        torch.nn.init.normal_(head.weight, std=0.1)
    dpos, dquat, dlogscale = field(cloud, frame_times(4))
    (dpos.square().sum() + dquat[..., 1:].square().sum() + dlogscale.square().sum()).backward()
    for name, param in field.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_position_scale_makes_motion_relative_to_asset_size(cloud):
    torch.manual_seed(5)
    small = _field_for(cloud)
    torch.manual_seed(5)
    big = _field_for(cloud * 10.0)
    assert math.isclose(float(big.position_scale), 10 * float(small.position_scale), rel_tol=1e-5)
    big.load_state_dict({**small.state_dict(), "bbox_min": big.bbox_min, "bbox_max": big.bbox_max,
                         "position_scale": big.position_scale})
    _perturb(small, scale=0.05), _perturb(big, scale=0.05)
    times = frame_times(3)
    dpos_small, dquat_small, _ = small(cloud, times)
    dpos_big, dquat_big, _ = big(cloud * 10.0, times)
    assert torch.allclose(dpos_big, 10.0 * dpos_small, rtol=1e-3, atol=1e-4)
    assert torch.allclose(dquat_big, dquat_small, atol=1e-4)


def test_field_can_learn_a_translation(cloud):
    torch.manual_seed(0)
    field = _field_for(cloud)
    times = frame_times(4)
    target = times.view(4, 1, 1) * torch.tensor([0.2, 0.0, -0.1])
    optimiser = torch.optim.Adam(field.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        optimiser.zero_grad()
        loss = (field(cloud, times)[0] - target).square().mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


def test_field_rejects_bad_inputs(cloud):
    with pytest.raises(MotionInputError, match="below"):
        MotionField([0, 0, 0], [1, -1, 1])
    with pytest.raises(MotionInputError, match="single point"):
        MotionField([1, 1, 1], [1, 1, 1])
    with pytest.raises(MotionInputError, match="3 finite numbers"):
        MotionField([0, 0], [1, 1])
    field = _field_for(cloud)
    with pytest.raises(MotionInputError, match=r"\[0, 1\]"):
        field(cloud, torch.tensor([0.0, 1.5]))
    with pytest.raises(MotionInputError, match=r"\[N, 3\]"):
        field(cloud[:, :2], frame_times(2))
    with pytest.raises(MotionInputError, match=r"\[T\]"):
        field(cloud, torch.zeros(2, 2))


def test_flat_bbox_is_padded_so_a_planar_splat_works():
    points = torch.rand(50, 3)
    points[:, 2] = 0.0
    field = MotionField(points.amin(0), points.amax(0), resolution=4, levels=1, time_resolution=4)
    assert (field.bbox_max - field.bbox_min > 0).all()
    _perturb(field)
    assert torch.isfinite(field(points, frame_times(3))[0]).all()


def test_plane_regularizer_is_a_differentiable_scalar_and_zero_for_constant_time_planes(cloud):
    field = _field_for(cloud)
    time_only = field.plane_regularizer(tv_weight=0.0, time_smoothness_weight=1.0, time_sparsity_weight=1.0)
    assert time_only.item() == 0.0  # time planes start at exactly 1
    total = field.plane_regularizer()
    assert total.ndim == 0 and total.item() > 0  # spatial planes carry init noise
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.hexplane.spatial_planes)


# ---- apply_motion -----------------------------------------------------------------------------


def test_apply_motion_identity_returns_inputs(cloud):
    n = cloud.shape[0]
    quats = quat_normalise(torch.randn(n, 4))
    log_scales = torch.randn(n, 3)
    dquat = IDENTITY_QUAT.expand(3, n, 4)
    means_t, quats_t, scales_t = apply_motion(cloud, quats, log_scales, torch.zeros(3, n, 3), dquat, torch.zeros(3, n, 3))
    assert torch.equal(means_t, cloud.expand(3, n, 3)) and torch.equal(scales_t, log_scales.expand(3, n, 3))
    assert torch.allclose(quats_t, quats.expand(3, n, 4), atol=1e-6)


def test_apply_motion_matches_the_shared_convention():
    rng = np.random.default_rng(7)
    n, frames = 30, 3
    means, quats, scales = (rng.normal(size=(n, w)).astype(np.float32) for w in (3, 4, 3))
    dp, ds = rng.normal(size=(frames, n, 3)).astype(np.float32), rng.normal(size=(frames, n, 3)).astype(np.float32)
    dq = deformation.quat_normalise(rng.normal(size=(frames, n, 4))).astype(np.float32)
    animation = deformation.Animation(dp, dq, ds)
    got = apply_motion(*(torch.from_numpy(a) for a in (means, quats, scales, dp, dq, ds)))
    for frame in range(frames):
        np.testing.assert_allclose(got[0][frame].numpy(), animation.frame_means(means, frame), atol=1e-6)
        np.testing.assert_allclose(got[1][frame].numpy(), animation.frame_quats(quats, frame), atol=1e-6)
        np.testing.assert_allclose(got[2][frame].numpy(), animation.frame_log_scales(scales, frame), atol=1e-6)


def test_apply_motion_rejects_mismatched_shapes(cloud):
    n = cloud.shape[0]
    with pytest.raises(MotionInputError, match="deltas"):
        apply_motion(cloud, torch.zeros(n, 4), torch.zeros(n, 3), torch.zeros(2, n, 3), torch.zeros(3, n, 4), torch.zeros(2, n, 3))


# ---- kNN graph --------------------------------------------------------------------------------


def _brute_force_knn(points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    dist = (points[:, None, :] - points[None, :, :]).norm(dim=-1)
    dist.fill_diagonal_(float("inf"))
    values, indices = dist.topk(k, dim=1, largest=False)
    return indices, values


@pytest.mark.parametrize("shape", ["cube", "shell"])
def test_knn_graph_matches_brute_force(shape):
    generator = torch.Generator().manual_seed(11)
    points = torch.randn(3000, 3, generator=generator, dtype=torch.float64)
    if shape == "shell":  # a surface, as splats are, far from the origin
        points = points / points.norm(dim=1, keepdim=True) * torch.tensor([1.0, 0.3, 2.0], dtype=torch.float64)
        points = points + torch.tensor([50.0, -20.0, 5.0], dtype=torch.float64)
    points = points.float()
    graph = knn_graph(points, k=6, chunk_size=128)
    assert isinstance(graph, KnnGraph)
    assert graph.indices.shape == (3000, 6) and graph.indices.dtype == torch.long
    expected_indices, expected_distances = _brute_force_knn(points.double(), 6)
    got_distances = (points.double()[graph.indices] - points.double()[:, None]).norm(dim=-1)
    assert torch.allclose(got_distances, expected_distances, rtol=1e-4, atol=1e-6)
    assert (graph.indices.sort(1).values == expected_indices.sort(1).values).float().mean() > 0.999
    assert torch.allclose(graph.weights.sum(1), torch.ones(3000), atol=1e-5)
    assert (graph.weights > 0).all()
    # Nearer neighbours weigh more.
    assert (graph.weights[:, :-1] >= graph.weights[:, 1:] - 1e-7).all()


def test_knn_graph_excludes_self_even_with_duplicates_and_isolated_points():
    points = torch.cat([torch.zeros(5, 3), torch.rand(40, 3), torch.tensor([[100.0, 100.0, 100.0]])])
    graph = knn_graph(points, k=4)
    assert not (graph.indices == torch.arange(46)[:, None]).any()
    assert set(graph.indices[0].tolist()) == {1, 2, 3, 4}
    assert torch.isfinite(graph.weights).all() and torch.allclose(graph.weights.sum(1), torch.ones(46))


def test_knn_graph_rejects_bad_input():
    with pytest.raises(MotionInputError, match="more than k"):
        knn_graph(torch.rand(4, 3), k=4)
    with pytest.raises(MotionInputError, match=r"\[N, 3\]"):
        knn_graph(torch.rand(10, 2))
    with pytest.raises(MotionInputError, match="NaN"):
        knn_graph(torch.full((10, 3), float("nan")))


def test_knn_graph_50k_points_on_cpu():
    points = torch.rand(50_000, 3, generator=torch.Generator().manual_seed(2))
    start = time.perf_counter()
    graph = knn_graph(points, k=8)
    elapsed = time.perf_counter() - start
    print(f"knn_graph(50k, k=8) on CPU: {elapsed:.2f} s")
    sample = torch.arange(0, 50_000, 997)
    expected = (points[sample, None] - points[None]).norm(dim=-1)
    expected[torch.arange(sample.numel()), sample] = float("inf")
    expected = expected.topk(8, dim=1, largest=False).values
    got = (points[graph.indices[sample]] - points[sample, None]).norm(dim=-1)
    assert torch.allclose(got, expected, atol=1e-6)


# ---- ARAP -------------------------------------------------------------------------------------


@pytest.fixture
def shell() -> torch.Tensor:
    generator = torch.Generator().manual_seed(8)
    points = torch.randn(600, 3, generator=generator)
    return points / points.norm(dim=1, keepdim=True) * torch.tensor([1.0, 0.6, 1.5]) + 0.05 * torch.randn(
        600, 3, generator=generator
    )


def test_arap_is_zero_for_rigid_motion(shell):
    graph = knn_graph(shell, k=8)
    generator = torch.Generator().manual_seed(9)
    frames = [shell]
    for _ in range(3):
        rotation = _random_rotation(generator).float()
        frames.append(shell @ rotation.T + torch.randn(3, generator=generator) * 3.0)
    deformed = torch.stack(frames)
    assert arap_loss(shell, deformed, graph).item() < 1e-6  # dimensionless: relative to edge length²
    raw = arap_loss(shell, deformed, graph, normalise=False).item()
    edge_scale = (graph.weights * (shell[graph.indices] - shell[:, None]).square().sum(-1)).sum(1).mean().item()
    assert raw < 1e-6 * edge_scale


def test_arap_is_positive_for_non_rigid_motion_and_reflections(shell):
    graph = knn_graph(shell, k=8)
    stretch = shell * torch.tensor([1.3, 1.0, 0.8])
    jitter = shell + 0.02 * torch.randn(shell.shape, generator=torch.Generator().manual_seed(1))
    mirror = shell * torch.tensor([-1.0, 1.0, 1.0])  # not reachable by a rotation
    for deformed in (stretch, jitter, mirror):
        assert arap_loss(shell, torch.stack([shell, deformed]), graph).item() > 1e-3
    # Doubling a stretch's strength raises the energy.
    stronger = shell * torch.tensor([1.6, 1.0, 0.6])
    assert arap_loss(shell, stronger[None], graph) > arap_loss(shell, stretch[None], graph)


def test_arap_gradient_and_anchor_sampling(shell):
    graph = knn_graph(shell, k=8)
    deformed = (shell * torch.tensor([1.3, 1.0, 0.8]))[None].clone().requires_grad_(True)
    full = arap_loss(shell, deformed, graph)
    full.backward()
    assert deformed.grad.abs().sum() > 0
    torch.manual_seed(0)
    sampled = arap_loss(shell, deformed.detach(), graph, sample=300)
    assert 0.5 * full.item() < sampled.item() < 2.0 * full.item()
    # Gradient descent on the energy moves the shape back towards rigidity.
    points = deformed.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([points], lr=1e-2)
    before = arap_loss(shell, points, graph).item()
    for _ in range(30):
        optimiser.zero_grad()
        arap_loss(shell, points, graph).backward()
        optimiser.step()
    assert arap_loss(shell, points, graph).item() < 0.5 * before


def test_arap_rejects_mismatched_inputs(shell):
    graph = knn_graph(shell, k=4)
    with pytest.raises(MotionInputError, match="Gaussians"):
        arap_loss(shell, shell[None, :100], graph)
    with pytest.raises(MotionInputError, match=r"\[T, N, 3\]"):
        arap_loss(shell, shell, graph)
    with pytest.raises(MotionInputError, match="sample"):
        arap_loss(shell, shell[None], graph, sample=0)


# ---- TV-3D ------------------------------------------------------------------------------------


def test_tv3d_zero_for_constant_velocity_positive_for_jitter():
    times = frame_times(8).view(8, 1, 1)
    velocity = torch.randn(1, 100, 3)
    steady = times * velocity
    angles = times * torch.randn(1, 100, 3) * 2.0
    steady_quats = quat_from_axis_angle(angles)  # constant angular velocity about a fixed axis
    steady_scales = times * torch.randn(1, 100, 3)
    assert tv3d_loss(steady, steady_quats, steady_scales).item() < 1e-9
    jitter = steady + 0.05 * torch.randn(8, 100, 3)
    assert tv3d_loss(jitter).item() > 1e-3
    assert tv3d_loss(steady, steady_quats, steady_scales + 0.05 * torch.randn(8, 100, 3)).item() > 1e-3
    wobbly_quats = quat_from_axis_angle(angles + 0.05 * torch.randn(8, 100, 3))
    assert tv3d_loss(steady, wobbly_quats, steady_scales).item() > 1e-4
    # Speeding up rotation (angular acceleration) is penalised too.
    accelerating = quat_from_axis_angle(times.square() * torch.randn(1, 100, 3) * 2.0)
    assert tv3d_loss(steady, accelerating).item() > 1e-4


def test_tv3d_ignores_quaternion_sign_flips_and_scales_positions():
    quats = quat_normalise(torch.randn(1, 20, 4)).expand(6, 20, 4).clone()
    quats[1::2] *= -1.0  # the same rotation every frame
    zeros = torch.zeros(6, 20, 3)
    assert tv3d_loss(zeros, quats).item() < 1e-12
    jitter = torch.randn(6, 20, 3)
    assert math.isclose(tv3d_loss(jitter * 4.0, position_scale=4.0).item(), tv3d_loss(jitter).item(), rel_tol=1e-5)


def test_tv3d_short_clips_and_gradients():
    dpos = torch.randn(2, 10, 3, requires_grad=True)
    assert tv3d_loss(dpos).item() == 0.0
    dpos = torch.randn(5, 10, 3, requires_grad=True)
    tv3d_loss(dpos).backward()
    assert dpos.grad.abs().sum() > 0
    with pytest.raises(MotionInputError, match="dquat"):
        tv3d_loss(dpos, torch.zeros(5, 10, 3))


def test_arap_up_to_a_uniform_scale_lets_the_whole_object_grow_but_not_stretch():
    torch.manual_seed(0)
    rest = torch.randn(200, 3)
    graph = knn_graph(rest, k=6)
    grown = (rest * 1.5)[None]
    stretched = (rest * torch.tensor([1.5, 1.0, 1.0]))[None]
    assert float(arap_loss(rest, grown, graph)) > 0.1  # plain ARAP: growth is distortion
    assert float(arap_loss(rest, grown, graph, uniform_scale=True)) < 1e-8
    assert float(arap_loss(rest, stretched, graph, uniform_scale=True)) > 0.01
    moved = grown + torch.tensor([0.3, -0.2, 0.1])  # a rigid shift on top changes nothing
    assert float(arap_loss(rest, moved, graph, uniform_scale=True)) < 1e-8
