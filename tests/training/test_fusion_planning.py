"""Planning of fused runs: how many iterations one updater call may run."""

from __future__ import annotations

import numpy as np
import pytest

from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import get_trigger, triggers
from ktrainer.training._fusion import plan_steps, runs_every_iteration, split_fused


def _noop(trainer):
    pass


class _Accumulating:
    """Runs every iteration, but needs calling only every `period`."""

    def __init__(self, period):
        self.period = period

    def __call__(self, trainer):
        pass

    def iterations_until_fire(self, trainer):
        return self.period - trainer.updater.iteration % self.period


def _trainer(stop=(100, "iteration"), ipe=10):
    return get_trainer_with_mock_updater(stop_trigger=stop, iter_per_epoch=ipe)


def test_no_extension_runs_up_to_the_cap_or_the_stop():
    trainer = _trainer(stop=(100, "iteration"))
    assert plan_steps(trainer, [], 64) == 64
    assert plan_steps(trainer, [], 1) == 1
    trainer = _trainer(stop=(5, "iteration"))
    # Below the cap, lengths are powers of two (fewer programs to compile).
    assert plan_steps(trainer, [], 64) == 4
    trainer = _trainer(stop=(64, "iteration"))
    assert plan_steps(trainer, [], 64) == 64


def test_the_nearest_trigger_bounds_the_chunk():
    trainer = _trainer()
    entries = [
        (get_trigger((1, "epoch")), _noop),
        (get_trigger((7, "iteration")), _noop),
    ]
    assert plan_steps(trainer, entries, 64) == 4  # 7, as a power of two
    assert plan_steps(trainer, entries, 7) == 7  # the cap itself is allowed


def test_a_trigger_that_cannot_tell_keeps_the_run_unfused():
    trainer = _trainer()
    assert plan_steps(trainer, [(triggers.TimeTrigger(10.0), _noop)], 64) == 1
    assert plan_steps(trainer, [(lambda t: False, _noop)], 64) == 1


def test_a_plain_every_iteration_extension_keeps_the_run_unfused():
    trainer = _trainer()
    assert plan_steps(trainer, [(get_trigger((1, "iteration")), _noop)], 64) == 1


def test_an_accumulating_extension_bounds_by_its_own_schedule():
    trainer = _trainer()
    entry = (get_trigger((1, "iteration")), _Accumulating(16))
    assert plan_steps(trainer, [entry], 64) == 16
    # Registered with another trigger, its own bound is not used.
    entry = (get_trigger((4, "iteration")), _Accumulating(16))
    assert plan_steps(trainer, [entry], 64) == 4


def test_stop_trigger_without_a_bound_keeps_the_run_unfused():
    trainer = get_trainer_with_mock_updater(stop_trigger=lambda t: False)
    assert plan_steps(trainer, [], 64) == 1


def test_runs_every_iteration_only_for_one_iteration_intervals():
    assert runs_every_iteration(get_trigger((1, "iteration")))
    assert not runs_every_iteration(get_trigger((2, "iteration")))
    assert not runs_every_iteration(get_trigger((1, "epoch")))
    assert not runs_every_iteration(lambda t: True)


def test_split_fused_gives_the_last_values_and_the_stacked_ones():
    stacked = np.arange(8.0).reshape(4, 2)
    last, fused = split_fused({"a": np.arange(4.0), "b": stacked, "c": 3.0}, 4)
    assert last["a"] == 3.0
    np.testing.assert_array_equal(last["b"], [6.0, 7.0])
    assert last["c"] == 3.0
    assert sorted(fused) == ["a", "b"]
    observation = {"a": 1.0}
    assert split_fused(observation, 1) == (observation, None)


@pytest.mark.parametrize("cap", [2, 7, 64])
def test_planned_chunks_meet_every_firing(cap):
    """Chunks planned from triggers end exactly where each one fires."""
    trainer = _trainer(stop=(3, "epoch"), ipe=10)
    entries = [
        (get_trigger((1, "epoch")), _noop),
        (get_trigger((4, "iteration")), _noop),
        (triggers.ManualScheduleTrigger([13, 17], "iteration"), _noop),
    ]
    expected = set(range(10, 31, 10)) | set(range(4, 31, 4)) | {13, 17}
    seen = set()
    updater = trainer.updater
    while not trainer.stop_trigger(trainer):
        steps = plan_steps(trainer, entries, cap)
        assert 1 <= steps <= cap
        for _ in range(steps):
            updater.update()
        for trigger, _ in entries:
            if trigger(trainer):
                seen.add(updater.iteration)
    assert seen == expected
    assert updater.iteration == 30
