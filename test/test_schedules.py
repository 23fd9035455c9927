"""LR schedule and iterative branch alternation (SegFlow §4.1)."""
from __future__ import annotations

import math

import pytest

from jointperception.config import TrainConfig
from jointperception.train.schedules import (
    BranchSchedule,
    get_lr,
    phase_metric,
    selection_score,
)

LR = dict(peak_lr=1e-3, min_lr=1e-5, warmup_steps=10, decay_steps=110)


def test_get_lr_warmup_rises_linearly_to_peak() -> None:
    lrs = [get_lr(s, **LR) for s in range(11)]
    assert all(b > a for a, b in zip(lrs, lrs[1:10]))
    assert lrs[0] == pytest.approx(1e-3 / 11)
    assert lrs[4] == pytest.approx(5 * lrs[0])
    assert lrs[10] == pytest.approx(1e-3)  # first step after warm-up is the peak


def test_get_lr_cosine_decay_and_floor() -> None:
    lrs = [get_lr(s, **LR) for s in range(10, 200)]
    decay = lrs[:100]
    assert all(b < a for a, b in zip(decay, decay[1:]))
    assert get_lr(60, **LR) == pytest.approx((1e-3 + 1e-5) / 2)  # half-way through the cosine
    assert all(lr == pytest.approx(1e-5) for lr in lrs[100:])
    assert min(lrs) >= 1e-5


def test_get_lr_without_warmup_and_bad_step() -> None:
    assert get_lr(0, peak_lr=1.0, min_lr=0.1, warmup_steps=0, decay_steps=10) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        get_lr(-1, **LR)


def _schedule(**kwargs: int) -> BranchSchedule:
    values = dict(mode="iterative", rounds=2, patience=2, min_phase_steps=0, max_steps=10_000) | kwargs
    return BranchSchedule(**values)


def test_iterative_schedule_switches_on_plateau() -> None:
    schedule = _schedule()
    assert (schedule.phase, schedule.branches, schedule.round) == ("flow", ("flow",), 1)
    assert not schedule.report(10, 5.0)
    assert not schedule.report(20, 4.0)  # improving
    assert not schedule.report(30, 3.999)  # < 1 % better: first bad evaluation
    assert schedule.report(40, 4.5)  # second bad evaluation -> switch
    assert (schedule.phase, schedule.branches, schedule.phase_start_step) == ("segmentation", ("segmentation",), 40)
    assert schedule.phase_step(55) == 15
    assert schedule.best_metric == math.inf and schedule.bad_evaluations == 0


def test_min_phase_steps_is_honoured() -> None:
    schedule = _schedule(min_phase_steps=100)
    for step in (10, 20, 30, 40, 90):
        assert not schedule.report(step, 1.0)  # plateau long since reached, phase too young
    assert schedule.phase == "flow"
    assert schedule.report(100, 1.0)
    assert schedule.phase == "segmentation"
    assert not schedule.report(150, 1.0) and not schedule.report(190, 1.0)  # 90 steps into the phase
    assert schedule.report(200, 1.0)
    assert (schedule.phase, schedule.round) == ("flow", 2)


def test_a_phase_that_keeps_improving_ends_at_its_share_of_the_budget() -> None:
    schedule = _schedule(rounds=3, max_steps=600)  # 6 phases -> 100 steps each
    assert schedule.decay_steps == 100
    assert not schedule.report(50, 5.0)
    assert schedule.report(100, 4.0)  # still improving, but the flow phase's share is used
    assert schedule.phase == "segmentation"
    assert not schedule.report(150, 3.0)
    assert schedule.report(200, 2.0)
    assert (schedule.phase, schedule.round) == ("flow", 2)


def test_rounds_are_counted_and_run_finishes() -> None:
    schedule = _schedule(rounds=2, patience=1)
    seen = [(schedule.phase, schedule.round)]
    step = 0
    while not schedule.done(step):
        step += 10
        if schedule.report(step, 1.0) and not schedule.finished:
            seen.append((schedule.phase, schedule.round))
    assert seen == [("flow", 1), ("segmentation", 1), ("flow", 2), ("segmentation", 2)]
    assert schedule.finished and step == 80  # per phase: one report sets the best, one plateaus
    assert not schedule.report(50, 0.1)  # nothing changes after the last phase


def test_max_steps_stops_the_run_and_joint_mode_never_switches() -> None:
    schedule = BranchSchedule.from_config(TrainConfig(mode="joint", max_steps=50, patience=1, min_phase_steps=0))
    assert (schedule.phase, schedule.branches, schedule.phases) == ("joint", ("segmentation", "flow"), ("joint",))
    for step in (10, 20, 30):
        assert not schedule.report(step, 1.0)
    assert not schedule.done(49) and schedule.done(50)
    assert schedule.decay_steps == 50
    assert BranchSchedule.from_config(TrainConfig(max_steps=6000, rounds=3, min_phase_steps=500)).decay_steps == 1000


def test_state_round_trips_through_a_dict() -> None:
    schedule = _schedule(min_phase_steps=5)
    for step, metric in ((10, 3.0), (20, 3.0), (30, 3.0), (40, 2.0)):
        schedule.report(step, metric)
    state = schedule.to_dict()
    assert all(isinstance(v, (int, float, str, bool)) for v in state.values())
    restored = BranchSchedule.from_dict(state)
    assert restored == schedule
    assert restored.report(50, 2.0) == schedule.report(50, 2.0)
    assert restored.report(60, 2.0) == schedule.report(60, 2.0) is True
    assert restored == schedule and restored.phase == "flow" and restored.round == 2
    with pytest.raises(ValueError):
        BranchSchedule.from_dict(state | {"bogus": 1})


def test_phase_metrics() -> None:
    metrics = {"epe": 2.0, "mask_j": 0.75}
    assert phase_metric("flow", metrics) == 2.0
    assert phase_metric("segmentation", metrics) == pytest.approx(0.25)
    assert selection_score(metrics, flow_scale=4.0) == pytest.approx(0.75)
    assert phase_metric("joint", metrics) == pytest.approx(selection_score(metrics))
