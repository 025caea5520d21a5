"""The turn search before the guide fit: it finds a spin from one view and leaves other clips alone."""

from __future__ import annotations

import math

import pytest
import torch

from animus3d_shared.settings import JobSettings, SettingsError
from animus3d_worker.motion import apply_motion
from animus3d_lab.motion_data import make_object, motion_animation
from animus3d_worker.stages.guide import FRONT_VIEW
from animus3d_worker.stages.yaw_search import cheapest_turn, search_yaw, start_from_yaw
from helpers_problem import motion_problem


def test_the_cheapest_turn_follows_the_lowest_costs_one_step_at_a_time():
    costs = torch.ones(6, 8)
    for t in range(6):
        costs[t, (-t) % 8] = 0.0  # the cheap candidate walks backwards round the circle
    assert cheapest_turn(costs, max_step=2) == [0, -1, -2, -3, -4, -5]
    assert cheapest_turn(torch.ones(4, 8)) == [0, 0, 0, 0]  # nothing to gain: no turn


@pytest.fixture(scope="module")
def vehicle_problem():
    obj = make_object("vehicle", seed=7, count=900)
    return obj, _problem(obj)[0]


def _problem(obj, **overrides):
    return motion_problem(obj.splat, orbit_views=1, frames=16, resolution=32, global_motion=True, **overrides)


def _clip(problem, obj, label: str) -> torch.Tensor:
    truth = motion_animation(obj, label, problem.frames, 1.0)
    deltas = [torch.as_tensor(a) for a in (truth.delta_position, truth.delta_rotation, truth.delta_scale)]
    with torch.no_grad():
        means, quats, log_scales = apply_motion(problem.splat.means, problem.splat.quats, problem.splat.log_scales, *deltas)
        return problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))[0]


def test_a_spin_seen_from_the_front_is_found_and_starts_the_whole_object_motion(vehicle_problem):
    obj, problem = vehicle_problem
    yaw = search_yaw(problem, _clip(problem, obj, "spin"), FRONT_VIEW)
    assert yaw is not None and yaw[0] == 0.0
    # the ground truth turns a full circle over the clip; a vehicle seen from the front looks alike
    # from behind, so half a turn or more, steadily one way, is what one view can tell
    assert abs(float(yaw[-1])) >= math.pi * 0.9
    steps = torch.diff(yaw)
    assert bool((steps * torch.sign(yaw[-1]) >= 0).all())
    start_from_yaw(problem.field.global_motion, yaw)
    rotation = problem.field.global_motion.rotation.detach()
    assert torch.allclose(rotation[:, 2], yaw, atol=1e-5) and float(rotation[:, :2].abs().max()) == 0.0
    problem.field.global_motion.rotation.data.zero_()


@pytest.mark.parametrize("label", ["still", "jump", "slide_left"])
def test_clips_without_a_turn_are_left_alone(vehicle_problem, label):
    obj, problem = vehicle_problem
    assert search_yaw(problem, _clip(problem, obj, label), FRONT_VIEW) is None


def test_the_search_needs_the_whole_object_motion():
    with pytest.raises(SettingsError, match="global_motion"):
        JobSettings.from_preset("standard", global_motion=False)  # the search is on in standard
    assert JobSettings.from_preset("standard", global_motion=False, guide_yaw_search=False).global_motion is False


def test_without_a_turn_the_guide_fit_keeps_the_whole_object_motion_at_rest(vehicle_problem):
    """A clip without a turn is fitted as it would be without the search: the whole-object motion stays
    the identity (frozen), the local field does the fitting."""
    from animus3d_worker.events import JobEvents
    from animus3d_worker.stages.guide import fit_to_guide

    obj, _ = vehicle_problem
    problem, settings = _problem(obj, guide_yaw_search=True, guide_steps=5)
    fit_to_guide(problem, _clip(problem, obj, "jump"), settings, JobEvents())
    motion = problem.field.global_motion
    assert all(not p.requires_grad and float(p.detach().abs().max()) == 0.0 for p in motion.parameters())
    assert any(float(p.detach().abs().max()) > 0.0 for p in problem.field.local_parameters())


def _fit_with_search(obj, label: str, steps: int = 10):
    from animus3d_worker.events import JobEvents
    from animus3d_worker.stages.guide import fit_to_guide

    problem, settings = _problem(obj, guide_yaw_search=True, guide_steps=steps)
    reports = []
    fit = fit_to_guide(problem, _clip(problem, obj, label), settings, JobEvents(on_progress=reports.append))
    return problem, reports, fit


def test_a_found_turn_is_kept_when_it_explains_the_guide_better(vehicle_problem):
    """A spin: the fit from the found turn and the fit without it are both run (reported as one stage
    of twice the steps), and the turned one is kept."""
    obj, _ = vehicle_problem
    problem, reports, fit = _fit_with_search(obj, "spin")
    assert reports[-1].step == reports[-1].total == 20
    assert fit.turn is not None and fit.turn.kept and fit.turn.turned_error < fit.turn.unturned_error
    assert abs(fit.turn.turn_deg) > 45 and reports[-1].message == fit.turn.message
    assert "kept the fit from a turn" in reports[-1].message
    rotation = problem.field.global_motion.rotation
    assert rotation.requires_grad and float(rotation.detach()[-1, 2].abs()) > math.radians(45)


def test_a_turn_that_explains_the_guide_worse_is_dropped(vehicle_problem, monkeypatch):
    """The search may take a jump for a turn (a plant's, in the suite); here it is made to: the fit
    without the turn explains the jump better and is the one kept, whole-object motion at rest."""
    from animus3d_worker.stages import guide

    half_turn = torch.linspace(0.0, math.pi, 16)
    monkeypatch.setattr(guide, "search_yaw", lambda problem, clip, view: half_turn)
    obj, _ = vehicle_problem
    problem, reports, fit = _fit_with_search(obj, "jump")
    assert fit.turn is not None and not fit.turn.kept and round(fit.turn.turn_deg) == 180
    assert "kept the fit without the turn of +180°" in reports[-1].message
    motion = problem.field.global_motion
    assert all(not p.requires_grad and float(p.detach().abs().max()) == 0.0 for p in motion.parameters())
    assert any(float(p.detach().abs().max()) > 0.0 for p in problem.field.local_parameters())
