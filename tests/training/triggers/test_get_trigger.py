"""get_trigger and the triggers package's exports."""

from __future__ import annotations

import re
import typing

import pytest

import ktrainer.training.triggers as triggers_module
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import get_trigger, triggers
from ktrainer.training._trigger_util import TriggerLike


def _my_trigger(trainer):
    return trainer.updater.iteration == 3


# (iter_per_epoch, trigger argument, expected firing after updates 1..7)
CASES = [
    (2, None, [False] * 7),
    (2, (2, "iteration"), [False, True, False, True, False, True, False]),
    (2, [2, "iteration"], [False, True, False, True, False, True, False]),
    (2, (2, "epoch"), [False, False, False, True, False, False, False]),
    (2, (0.5, "epoch"), [True] * 7),
    (
        2,
        triggers.IntervalTrigger(2, "iteration"),
        [False, True, False, True, False, True, False],
    ),
    (2, _my_trigger, [False, False, True, False, False, False, False]),
]
IDS = [
    "none_never_fires",
    "tuple_iteration",
    "list_iteration",
    "tuple_epoch",
    "tuple_fractional_epoch",
    "trigger_object",
    "function",
]


@pytest.mark.parametrize(("iter_per_epoch", "argument", "expected"), CASES, ids=IDS)
def test_get_trigger_table(iter_per_epoch, argument, expected):
    trainer = get_trainer_with_mock_updater(
        stop_trigger=None, iter_per_epoch=iter_per_epoch
    )
    trigger = get_trigger(argument)
    fired = []
    for _ in expected:
        trainer.updater.update()
        fired.append(trigger(trainer))
    assert fired == expected


def test_callables_are_returned_unchanged_and_tuples_become_interval_triggers():
    obj = triggers.OnceTrigger()
    assert get_trigger(obj) is obj
    assert get_trigger(_my_trigger) is _my_trigger
    made = get_trigger((3, "epoch"))
    assert isinstance(made, triggers.IntervalTrigger)
    assert made.get_training_length() == (3, "epoch")


@pytest.mark.parametrize(
    ("argument", "error", "match"),
    [
        ("epoch", TypeError, "trigger='epoch'"),
        (5, TypeError, "trigger=5"),
        ((1, "epoch", 2), TypeError, "trigger=(1, 'epoch', 2)"),
        (
            (1, "epochs"),
            ValueError,
            "unit must be 'iteration' or 'epoch'. Received: unit='epochs'",
        ),
        ((0, "iteration"), ValueError, "period=0"),
    ],
    ids=["str", "int", "triple", "bad_unit", "bad_period"],
)
def test_bad_trigger_raises_naming_it(argument, error, match):
    with pytest.raises(error, match=re.escape(match)):
        get_trigger(argument)


def test_trigger_like_alias_names_the_accepted_forms():
    forms = typing.get_args(TriggerLike)
    assert type(None) in forms
    assert tuple[float, str] in forms


def test_package_exports_exactly_the_triggers():
    expected = sorted(
        [
            "BestValueTrigger",
            "EarlyStoppingTrigger",
            "IntervalTrigger",
            "ManualScheduleTrigger",
            "MaxValueTrigger",
            "MinValueTrigger",
            "OnceTrigger",
            "TimeTrigger",
        ]
    )
    assert triggers_module.__all__ == expected
    public = sorted(
        name
        for name, value in vars(triggers_module).items()
        if not name.startswith("_") and isinstance(value, type)
    )
    assert public == expected
