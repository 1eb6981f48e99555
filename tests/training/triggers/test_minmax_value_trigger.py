"""Best/Max/MinValueTrigger: Chainer's tables, tensors, resume, errors."""

from __future__ import annotations

import operator

import keras
import numpy as np
import pytest
from _trigger_testing import DictDeserializer, load, save

from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import triggers

KEY = "main/accuracy"
VALUES_8 = [0.5, 0.5, 0.5, 0.5, 0.4, 0.4, 0.6, 0.6]

# (trigger class, iter_per_epoch, interval, values, resume, fired iterations)
CASES = [
    (triggers.MaxValueTrigger, 1, (1, "iteration"), [0.5, 0.5, 0.4, 0.6], 1, [1, 4]),
    (triggers.MaxValueTrigger, 1, (2, "iteration"), VALUES_8, 2, [2, 8]),
    (triggers.MaxValueTrigger, 1, (2, "iteration"), VALUES_8, 3, [2, 8]),
    (triggers.MaxValueTrigger, 2, (1, "epoch"), VALUES_8, 2, [2, 8]),
    (triggers.MaxValueTrigger, 2, (1, "epoch"), VALUES_8, 3, [2, 8]),
    (triggers.MinValueTrigger, 1, (1, "iteration"), [0.5, 0.5, 0.4, 0.6], 1, [1, 3]),
    (triggers.MinValueTrigger, 1, (2, "iteration"), VALUES_8, 2, [2, 6]),
    (triggers.MinValueTrigger, 1, (2, "iteration"), VALUES_8, 3, [2, 6]),
    (triggers.MinValueTrigger, 2, (1, "epoch"), VALUES_8, 2, [2, 6]),
    (triggers.MinValueTrigger, 2, (1, "epoch"), VALUES_8, 3, [2, 6]),
    # The mean over the interval decides, not the last value.
    (triggers.MaxValueTrigger, 1, (2, "iteration"), [0.1, 0.9, 0.6, 0.6], 2, [2, 4]),
    (triggers.MinValueTrigger, 1, (2, "iteration"), [0.1, 0.9, 0.6, 0.6], 2, [2]),
]
IDS = [
    "max_1_iteration",
    "max_2_iterations",
    "max_2_iterations_unaligned_resume",
    "max_1_epoch",
    "max_1_epoch_unaligned_resume",
    "min_1_iteration",
    "min_2_iterations",
    "min_2_iterations_unaligned_resume",
    "min_1_epoch",
    "min_1_epoch_unaligned_resume",
    "max_uses_mean",
    "min_uses_mean",
]
case_table = pytest.mark.parametrize(
    ("trigger_type", "iter_per_epoch", "interval", "values", "resume", "expected"),
    CASES,
    ids=IDS,
)


def _run_trainer(trigger, values, iter_per_epoch, stop, state=None, as_tensor=False):
    """Runs a mock trainer reporting `values` and records when `trigger` fires.

    Returns the fired iterations and the trainer's state after the run.
    """
    trainer = get_trainer_with_mock_updater(
        stop_trigger=(stop, "iteration"), iter_per_epoch=iter_per_epoch
    )

    def set_observation(t):
        value = values[t.updater.iteration - 1]
        if as_tensor:
            value = keras.ops.convert_to_tensor(np.float32(value))
        t.observation = {KEY: value}

    fired = []
    trainer.extend(set_observation, trigger=(1, "iteration"), priority=2)
    trainer.extend(
        lambda t: fired.append(t.updater.iteration),
        name="record",
        trigger=trigger,
        priority=1,
    )
    if state is not None:
        load(state, trainer)
    trainer.run()
    return fired, save(trainer)


@case_table
def test_fires_when_the_interval_mean_is_a_new_best(
    trigger_type, iter_per_epoch, interval, values, resume, expected
):
    for as_tensor in (False, True):
        trigger = trigger_type(KEY, trigger=interval)
        fired, _ = _run_trainer(
            trigger, values, iter_per_epoch, len(values), as_tensor=as_tensor
        )
        assert fired == expected, f"as_tensor={as_tensor}"


@case_table
def test_resume_midway_gives_the_same_firings(
    trigger_type, iter_per_epoch, interval, values, resume, expected
):
    first = trigger_type(KEY, trigger=interval)
    fired_before, state = _run_trainer(first, values, iter_per_epoch, resume)
    assert fired_before == [it for it in expected if it <= resume]

    second = trigger_type(KEY, trigger=interval)
    fired_after, _ = _run_trainer(second, values, iter_per_epoch, len(values), state)
    assert fired_after == [it for it in expected if it > resume]


def test_best_value_trigger_with_a_custom_compare_and_best_value():
    trainer = get_trainer_with_mock_updater(stop_trigger=None, iter_per_epoch=1)
    # "Better" means closer to 1.
    trigger = triggers.BestValueTrigger(
        "x", lambda best, new: abs(new - 1) < abs(best - 1), trigger=(1, "iteration")
    )
    assert trigger.best_value is None
    fired = []
    for value in [3.0, 0.0, 1.5, 2.5, 0.75]:
        trainer.updater.update()
        trainer.observation = {"x": value}
        fired.append(trigger(trainer))
    assert fired == [True, True, True, False, True]
    assert trigger.best_value == 0.75


def test_state_holds_the_partial_interval_and_the_best():
    trainer = get_trainer_with_mock_updater(stop_trigger=None, iter_per_epoch=1)
    trigger = triggers.MaxValueTrigger("x", trigger=(3, "iteration"))
    assert save(trigger)["has_best_value"] is False
    for value in [1.0, 2.0, 3.0, 10.0, 20.0]:
        trainer.updater.update()
        trainer.observation = {"x": value}
        trigger(trainer)
    state = save(trigger)
    assert state["has_best_value"] is True
    assert state["best_value"] == 2.0
    assert state["summary/sum"] == 30.0
    assert state["summary/count"] == 2
    assert state["interval_trigger/previous_iteration"] == 5


def test_checking_load_changes_nothing():
    trainer = get_trainer_with_mock_updater(stop_trigger=None, iter_per_epoch=1)
    trigger = triggers.MinValueTrigger("x", trigger=(1, "iteration"))
    trainer.updater.update()
    trainer.observation = {"x": 5.0}
    trigger(trainer)
    before = save(trigger)
    trigger.serialize(DictDeserializer({k: 0 for k in before}, checking=True))
    assert save(trigger) == before


def test_missing_key_at_a_check_raises_key_error_naming_it():
    trainer = get_trainer_with_mock_updater(stop_trigger=None, iter_per_epoch=1)
    trigger = triggers.MaxValueTrigger("validation/main/accuracy", (1, "iteration"))
    trainer.updater.update()
    trainer.observation = {"main/loss": 1.0}
    with pytest.raises(KeyError, match="validation/main/accuracy"):
        trigger(trainer)


def test_compare_directions():
    assert triggers.MaxValueTrigger("k")._compare is operator.lt
    assert triggers.MinValueTrigger("k")._compare is operator.gt
    assert triggers.MaxValueTrigger("k").key == "k"


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: triggers.MaxValueTrigger(1), TypeError, "key must be a str"),
        (lambda: triggers.BestValueTrigger("k", None), TypeError, "compare"),
        (
            lambda: triggers.MinValueTrigger("k", trigger=(1, "epochs")),
            ValueError,
            "unit='epochs'",
        ),
        (lambda: triggers.MinValueTrigger("k", trigger="epoch"), TypeError, "trigger="),
    ],
    ids=["key", "compare", "unit", "trigger"],
)
def test_bad_arguments_raise_naming_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()
