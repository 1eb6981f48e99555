"""`iterations_until_fire`: triggers that tell how long a fused run may go.

Each case runs the same trigger configuration twice: once called after
every update, once called only where its own bound says it may next fire
(so many updates run between calls, as in a fused run). Both must fire at
exactly the same iterations, and the bound must never skip a firing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ktrainer.iterators import SerialIterator
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import get_trigger, triggers
from ktrainer.training._trigger_util import iterations_until_fire


class _Trainer:
    """The parts of a trainer that triggers read, over a real iterator."""

    def __init__(self, updater) -> None:
        self.updater = updater
        self.observation: dict = {}
        self.fused_observation = None


class _IteratorUpdater:
    """Counts updates over a `SerialIterator`, as `StandardUpdater` does."""

    def __init__(self, size: int, batch_size: int) -> None:
        self._iterator = SerialIterator(np.arange(size), batch_size, shuffle=False)
        self.iteration = 0

    def get_iterator(self, name: str = "main"):
        return self._iterator

    @property
    def epoch(self):
        return self._iterator.epoch

    @property
    def epoch_detail(self):
        return self._iterator.epoch_detail

    @property
    def previous_epoch_detail(self):
        return self._iterator.previous_epoch_detail

    @property
    def is_new_epoch(self):
        return self._iterator.is_new_epoch

    def update(self) -> None:
        next(self._iterator)
        self.iteration += 1


def _mock(iter_per_epoch):
    trainer = get_trainer_with_mock_updater(iter_per_epoch=iter_per_epoch)
    return trainer


def _iterator_trainer(size, batch_size):
    return _Trainer(_IteratorUpdater(size, batch_size))


def _fire_points_every_call(make_trigger, make_trainer, total):
    trainer, trigger = make_trainer(), make_trigger()
    fired = []
    for _ in range(total):
        trainer.updater.update()
        if trigger(trainer):
            fired.append(trainer.updater.iteration)
    return fired


def _fire_points_planned(make_trigger, make_trainer, total, cap=1000):
    trainer, trigger = make_trainer(), make_trigger()
    fired, calls = [], 0
    while trainer.updater.iteration < total:
        bound = iterations_until_fire(trigger, trainer)
        assert bound is not None
        steps = int(min(bound, cap, total - trainer.updater.iteration))
        assert steps >= 1
        for _ in range(steps):
            trainer.updater.update()
        calls += 1
        if trigger(trainer):
            fired.append(trainer.updater.iteration)
    return fired, calls


TRIGGERS = {
    "iter-1": lambda: triggers.IntervalTrigger(1, "iteration"),
    "iter-7": lambda: triggers.IntervalTrigger(7, "iteration"),
    "iter-2.5": lambda: triggers.IntervalTrigger(2.5, "iteration"),
    "epoch-1": lambda: triggers.IntervalTrigger(1, "epoch"),
    "epoch-0.5": lambda: triggers.IntervalTrigger(0.5, "epoch"),
    "epoch-0.3": lambda: triggers.IntervalTrigger(0.3, "epoch"),
    "epoch-2": lambda: triggers.IntervalTrigger(2, "epoch"),
    "manual-iter": lambda: triggers.ManualScheduleTrigger([3, 10, 11, 40], "iteration"),
    "manual-epoch": lambda: triggers.ManualScheduleTrigger([0.5, 1, 2.25], "epoch"),
    "once": lambda: triggers.OnceTrigger(),
    "tuple": lambda: get_trigger((5, "iteration")),
    "never": lambda: get_trigger(None),
}

TRAINERS = {
    "mock-10": lambda: _mock(10),
    "mock-2.5": lambda: _mock(2.5),
    "iter-100-by-32": lambda: _iterator_trainer(100, 32),
    "iter-10-by-3": lambda: _iterator_trainer(10, 3),
    "iter-5-by-8": lambda: _iterator_trainer(5, 8),
}


@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
@pytest.mark.parametrize("trigger_name", sorted(TRIGGERS))
def test_planned_calls_fire_at_the_same_iterations(trigger_name, trainer_name):
    make_trigger, make_trainer = TRIGGERS[trigger_name], TRAINERS[trainer_name]
    every = _fire_points_every_call(make_trigger, make_trainer, 60)
    planned, calls = _fire_points_planned(make_trigger, make_trainer, 60)
    assert planned == every
    if trigger_name in ("never", "iter-7", "manual-iter"):
        # The point of the bound: far fewer calls than iterations.
        assert calls < 20


def test_bound_of_an_interval_trigger_counts_to_its_next_firing():
    trainer = _mock(10)
    trigger = triggers.IntervalTrigger(4, "iteration")
    assert iterations_until_fire(trigger, trainer) == 4
    for _ in range(3):
        trainer.updater.update()
    # Not called since iteration 0: the firing may already be pending.
    assert iterations_until_fire(trigger, trainer) == 1
    trigger(trainer)
    assert iterations_until_fire(trigger, trainer) == 1


def test_epoch_bound_stops_at_the_end_of_the_epoch():
    # 100 examples by 32: epoch 0 ends with the 4th update; a 2-epoch
    # period must not plan past that end (the next order may differ).
    trainer = _iterator_trainer(100, 32)
    trigger = triggers.IntervalTrigger(2, "epoch")
    assert iterations_until_fire(trigger, trainer) == 4


def test_once_trigger_bound_after_firing_is_infinite():
    trainer = _mock(10)
    trigger = triggers.OnceTrigger()
    assert iterations_until_fire(trigger, trainer) == 1
    trainer.updater.update()
    assert trigger(trainer)
    assert iterations_until_fire(trigger, trainer) == math.inf


def test_triggers_that_cannot_tell_return_none():
    trainer = _mock(10)
    assert iterations_until_fire(triggers.TimeTrigger(1.0), trainer) is None
    assert iterations_until_fire(lambda t: True, trainer) is None


def test_epoch_bound_is_none_without_epoch_geometry():
    trainer = _Trainer(_IteratorUpdater(10, 3))
    trainer.updater.get_iterator = None  # an updater with no iterator to read
    trigger = triggers.IntervalTrigger(1, "epoch")
    trigger._previous_epoch_detail = 0.0
    assert iterations_until_fire(trigger, trainer) is None


@pytest.mark.parametrize(
    "make_trigger",
    [
        lambda: triggers.MinValueTrigger("main/loss", (3, "iteration")),
        lambda: triggers.MaxValueTrigger("main/loss", (1, "epoch")),
        lambda: triggers.EarlyStoppingTrigger(
            (2, "iteration"), "main/loss", patience=2, max_trigger=(50, "iteration")
        ),
    ],
    ids=["min", "max", "early-stopping"],
)
def test_value_triggers_read_fused_observations(make_trigger):
    """Called once per fused chunk, a value trigger sees every iteration."""
    rng = np.random.default_rng(0)
    losses = rng.uniform(size=60).astype("float32")

    every_trainer, every = _mock(10), make_trigger()
    fired_every = []
    for i in range(60):
        every_trainer.updater.update()
        every_trainer.observation = {"main/loss": losses[i]}
        if every(every_trainer):
            fired_every.append(i + 1)

    fused_trainer, fused = _mock(10), make_trigger()
    fired_fused = []
    done = 0
    while done < 60:
        steps = int(min(iterations_until_fire(fused, fused_trainer), 60 - done))
        for _ in range(steps):
            fused_trainer.updater.update()
        chunk = losses[done : done + steps]
        fused_trainer.observation = {"main/loss": chunk[-1]}
        fused_trainer.fused_observation = {"main/loss": chunk} if steps > 1 else None
        done += steps
        if fused(fused_trainer):
            fired_fused.append(done)
    assert fired_fused == fired_every
    assert fired_every  # the case is not vacuous
