"""TimeTrigger: a fixed schedule in seconds of `trainer.elapsed_time`."""

from __future__ import annotations

import re
import time

import pytest
from _trigger_testing import load, save

from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import triggers


class _ClockTrainer:
    """Just what TimeTrigger reads: an `elapsed_time` we set by hand."""

    def __init__(self):
        self.elapsed_time = 0.0


# (period, elapsed times at successive calls, expected firing)
CASES = [
    (1, [0, 0.9, 1.2, 1.3, 2.1], [False, False, True, False, True]),
    (1, [1.0, 1.5, 2.0, 2.5], [False, True, False, True]),
    # One late call fires once; the schedule does not drift.
    (1, [3.5, 3.6, 4.5], [True, True, True]),
    (0.25, [0.2, 0.3, 0.4, 0.6], [False, True, False, True]),
]
IDS = ["chainer", "boundary_excluded", "late_call_catches_up", "fractional"]


@pytest.mark.parametrize(("period", "times", "expected"), CASES, ids=IDS)
def test_fires_after_each_multiple_of_period(period, times, expected):
    trainer = _ClockTrainer()
    trigger = triggers.TimeTrigger(period)
    fired = []
    for t in times:
        trainer.elapsed_time = t
        fired.append(trigger(trainer))
    assert fired == expected


def test_resume_keeps_the_next_firing_time():
    trainer = _ClockTrainer()
    trigger = triggers.TimeTrigger(1)
    trainer.elapsed_time = 1.2
    assert trigger(trainer)
    assert trigger._next_time == 2.0
    state = save(trigger)
    assert state == {"next_time": 2.0}

    fresh = triggers.TimeTrigger(1)
    load(state, fresh)
    assert fresh._next_time == 2.0
    trainer.elapsed_time = 1.9
    assert not fresh(trainer)
    trainer.elapsed_time = 2.1
    assert fresh(trainer)


def test_in_a_trainer_with_a_fake_clock(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    trainer = get_trainer_with_mock_updater((14, "iteration"))

    def tick(t):  # every iteration takes a quarter of a second
        clock[0] += 0.25

    calls = []
    trainer.extend(tick, trigger=(1, "iteration"), priority=1000)
    trainer.extend(
        lambda t: calls.append(t.updater.iteration),
        name="record",
        trigger=triggers.TimeTrigger(1),
    )
    trainer.run()
    # Elapsed 0.25 * i: passes 1.0 at i=5, 2.0 at i=9, 3.0 at i=13.
    assert calls == [5, 9, 13]


@pytest.mark.parametrize(
    ("period", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        ("1", TypeError),
        (None, TypeError),
    ],
    ids=["zero", "negative", "nan", "str", "none"],
)
def test_bad_period_raises_naming_it(period, error):
    with pytest.raises(error, match=re.escape(f"period={period!r}")):
        triggers.TimeTrigger(period)
