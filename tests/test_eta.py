"""The job's time-left estimate (``EtaClock``): a stage's own pace once it has taken a step."""

from __future__ import annotations

import pytest

from animus3d_worker import events
from animus3d_worker.events import EtaClock


@pytest.fixture
def clock(monkeypatch):
    now = {"t": 0.0}
    monkeypatch.setattr(events.time, "monotonic", lambda: now["t"])
    return EtaClock(), now


def test_a_stage_is_timed_by_its_own_steps_and_the_later_work_by_the_same_pace(clock):
    eta_clock, now = clock
    assert eta_clock.stage_eta("guide", 1, 100, stage_work=50.0, later_work=200.0) is None  # no pace yet
    now["t"] = 10.0  # ten steps in ten seconds: 1 s a step, 2 s a unit of work
    assert eta_clock.stage_eta("guide", 11, 100, stage_work=50.0, later_work=200.0) == pytest.approx(89 + 400)
    now["t"] = 100.0
    assert eta_clock.stage_eta("guide", 100, 100, stage_work=50.0, later_work=0.0) == pytest.approx(0.0)


def test_a_new_stage_starts_its_own_pace_and_the_fraction_estimate_covers_the_gap(clock):
    eta_clock, now = clock
    eta_clock.stage_eta("guide", 1, 10, stage_work=5.0, later_work=20.0)
    now["t"] = 30.0
    assert eta_clock.stage_eta("refine", 1, 10, stage_work=20.0, later_work=0.0) is None
    assert eta_clock.eta(0.75) == pytest.approx(10.0)  # 30 s for three quarters of the work
    now["t"] = 34.0
    assert eta_clock.stage_eta("refine", 3, 10, stage_work=20.0, later_work=0.0) == pytest.approx(2.0 * 7)
