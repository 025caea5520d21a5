"""The whole-object similarity of the motion field (``global_motion=True``)."""

from __future__ import annotations

import math

import pytest
import torch

from animus3d_shared.settings import JobSettings
from animus3d_worker.motion import (
    MotionField,
    apply_motion,
    arap_loss,
    frame_times,
    knn_graph,
    quat_from_axis_angle,
    quat_to_matrix,
)
from animus3d_worker.motion.global_motion import GlobalMotion, interpolate_knots
from animus3d_worker.stages.core import weighted_total


@pytest.fixture
def cloud() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(300, 3, generator=generator) * torch.tensor([2.0, 1.0, 3.0]) - torch.tensor([1.0, 0.5, 0.0])


def _field(cloud: torch.Tensor, **kwargs) -> MotionField:
    return MotionField(cloud.min(0).values, cloud.max(0).values, resolution=8, levels=1, time_resolution=8,
                       global_motion=True, **kwargs)


def test_interpolation_hits_the_knots_and_is_linear_between_them():
    knots = torch.tensor([[0.0], [2.0], [6.0]])
    values = interpolate_knots(knots, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert torch.allclose(values.squeeze(-1), torch.tensor([0.0, 1.0, 2.0, 4.0, 6.0]))


def test_a_new_global_field_is_the_identity_and_frame_zero_stays_exact(cloud):
    field = _field(cloud)
    dpos, dquat, dlogscale = field(cloud, frame_times(6))
    assert torch.equal(dpos, torch.zeros_like(dpos)) and torch.equal(dlogscale, torch.zeros_like(dlogscale))
    with torch.no_grad():
        for param in field.parameters():
            param.add_(torch.randn(param.shape) * 0.3)
    dpos, dquat, dlogscale = field(cloud, torch.tensor([0.0, 0.5]))
    assert torch.equal(dpos[0], torch.zeros(300, 3)) and torch.equal(dlogscale[0], torch.zeros(300, 3))
    assert torch.equal(dquat[0], torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(300, 4))
    assert dpos[1].abs().mean() > 1e-2


def test_a_half_turn_about_the_vertical_through_the_base_point(cloud):
    field = _field(cloud)
    with torch.no_grad():
        field.global_motion.rotation[:, 2] = torch.linspace(0.0, math.pi, 8)
    dpos, dquat, dlogscale = field(cloud, torch.tensor([1.0]))
    base = field.global_motion.base
    expected = (cloud - base) * torch.tensor([-1.0, -1.0, 1.0]) + base
    assert torch.allclose(cloud + dpos[0], expected, atol=1e-4)
    # every Gaussian turns with the object, and it is rigid: no ARAP residual
    rotation = quat_to_matrix(dquat[0])
    half_turn = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))
    assert torch.allclose(rotation, half_turn.expand(300, 3, 3), atol=1e-4)
    means_t, _, _ = apply_motion(cloud, torch.tensor([1.0, 0, 0, 0]).expand(300, 4), torch.zeros(300, 3),
                                 dpos, dquat, dlogscale)
    assert arap_loss(cloud, means_t, knn_graph(cloud, k=6)).item() < 1e-8


def test_translation_and_scale_are_relative_to_the_asset(cloud):
    field = _field(cloud)
    with torch.no_grad():
        field.global_motion.translation[-1, 0] = 0.5  # half the bbox diagonal at the last knot
        field.global_motion.log_scale[-1, 0] = math.log(2.0)
    dpos, _, dlogscale = field(cloud, torch.tensor([1.0]))
    base = field.global_motion.base
    shift = torch.tensor([0.5 * float(field.position_scale), 0.0, 0.0])
    assert torch.allclose(cloud + dpos[0], 2.0 * (cloud - base) + base + shift, atol=1e-4)
    assert torch.allclose(dlogscale[0], torch.full((300, 3), math.log(2.0)), atol=1e-6)


def test_the_global_motion_is_composed_after_the_local_deltas(cloud):
    field = _field(cloud)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in field.local_parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.3)
    times = frame_times(4)
    local_dpos, _, _ = field(cloud, times)  # the global part is still zero
    assert local_dpos[1:].abs().mean() > 1e-2
    with torch.no_grad():
        field.global_motion.rotation[:, 2] = torch.linspace(0.0, 1.0, 8)
    dpos, _, _ = field(cloud, times)
    rotation = quat_to_matrix(quat_from_axis_angle(interpolate_knots(field.global_motion.rotation, times)))
    base = field.global_motion.base
    expected = torch.einsum("tij,tnj->tni", rotation, cloud + local_dpos - base) + base
    assert torch.allclose(cloud + dpos, expected, atol=1e-5)


def test_global_parameters_learn_a_spin_the_local_field_is_not_asked_for(cloud):
    """Fitting a quarter turn: the seven-number global motion gets there in a few dozen steps."""
    torch.manual_seed(0)
    field = _field(cloud)
    times = frame_times(4)
    angle = times * (math.pi / 2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    rotation = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1),
                            torch.stack([zero, zero, one], -1)], -2)
    base = field.global_motion.base
    target = torch.einsum("tij,nj->tni", rotation, cloud - base) + base
    optimiser = torch.optim.Adam([{"params": field.local_parameters(), "lr": 1e-3},
                                  {"params": list(field.global_motion.parameters()), "lr": 5e-2}])
    for _ in range(80):
        optimiser.zero_grad()
        loss = (cloud + field(cloud, times)[0] - target).square().mean()
        loss.backward()
        optimiser.step()
    assert loss.item() < 1e-3
    turned = interpolate_knots(field.global_motion.rotation, torch.tensor([1.0]))[0, 2] - field.global_motion.rotation[0, 2]
    assert abs(float(turned) - math.pi / 2) < 0.1


def test_without_global_motion_the_field_has_no_global_parameters(cloud):
    field = MotionField(cloud.min(0).values, cloud.max(0).values, resolution=8, levels=1, time_resolution=8)
    assert field.global_motion is None
    assert len(field.local_parameters()) == len(list(field.parameters()))


def test_the_setting_is_on_with_the_turn_search_in_standard_off_in_the_papers_presets_and_validated():
    assert JobSettings.from_preset("standard").global_motion is True
    assert JobSettings.from_preset("standard").guide_yaw_search is True
    for preset in ("msd", "paper"):
        assert JobSettings.from_preset(preset).global_motion is False
    assert JobSettings.from_preset("standard", guide_yaw_search=False, global_motion=False).global_motion is False
    with pytest.raises(ValueError):
        JobSettings.from_preset("standard", global_lr=-1.0)


def test_the_pull_to_rest_is_zero_at_rest_grows_with_departure_and_joins_the_loss():
    settings = JobSettings.from_preset("test", global_motion=True, global_rest_weight=2.0)
    motion = GlobalMotion(torch.zeros(3), time_resolution=4)
    assert float(motion.departure_from_rest()) == 0.0
    with torch.no_grad():
        motion.rotation[2, 1] = 0.5
    small = float(motion.departure_from_rest())
    with torch.no_grad():
        motion.rotation[2, 1] = 1.0
    assert 0.0 < small < float(motion.departure_from_rest())
    with torch.no_grad():  # the same offset at every knot is no departure: motion is relative to time 0
        motion.rotation.fill_(0.3)
    assert float(motion.departure_from_rest()) == 0.0
    terms = {"msd": torch.tensor(1.0), "global_rest": torch.tensor(0.25)}
    assert float(weighted_total("msd", terms, settings)) == 1.5
