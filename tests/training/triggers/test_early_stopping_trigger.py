"""EarlyStoppingTrigger: Chainer's tables, modes, resume, stop in a trainer."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from _trigger_testing import load, save

from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import get_trigger, triggers

# (kwargs, monitor, values reported at iterations 1, 2, ..., expected firing)
CASES = [
    (
        {"patients": 3},
        "main/accuracy",
        [0.5, 0.5, 0.6, 0.7, 0.6, 0.4, 0.3, 0.2],
        [False] * 6 + [True, True],
    ),
    (
        {"patients": 3},
        "main/loss",
        [100, 80, 30, 10, 20, 24, 30, 35],
        [False] * 6 + [True, True],
    ),
    (
        {"patients": 3, "max_trigger": (3, "epoch")},
        "main/loss",
        [100, 80, 30],
        [False, False, True],
    ),
    (
        {"patients": 3, "max_trigger": (3, "iteration")},
        "main/loss",
        [100, 80, 30],
        [False, False, True],
    ),
    (
        {"patience": 1, "mode": "max"},
        "main/loss",
        [1, 2, 3, 3],
        [False, False, False, True],
    ),
    (
        {"patience": 2, "mode": "min"},
        "main/accuracy",
        [0.5, 0.4, 0.6, 0.7],
        [False, False, False, True],
    ),
    ({}, "main/loss", [5, 4, 3, 3, 3, 3], [False] * 5 + [True]),
    (
        {"patience": 1, "check_trigger": (2, "iteration")},
        "main/loss",
        [4, 2, 1, 4, 3, 3],
        [False] * 5 + [True],
    ),
]
IDS = [
    "accuracy_auto_max",
    "loss_auto_min",
    "max_epoch",
    "max_iteration",
    "mode_max",
    "mode_min",
    "default_patience_3",
    "mean_over_check_interval",
]
case_table = pytest.mark.parametrize(
    ("kwargs", "monitor", "values", "expected"), CASES, ids=IDS
)


def _tensor(value):
    return keras.ops.convert_to_tensor(np.float32(value))


def _run(trainer, trigger, monitor, values, expected, as_tensor=True):
    for value, want in zip(values, expected):
        trainer.updater.update()
        trainer.observation = {monitor: _tensor(value) if as_tensor else value}
        assert trigger(trainer) == want, f"at iteration {trainer.updater.iteration}"


@case_table
def test_fires_after_patience_checks_without_improvement(
    kwargs, monitor, values, expected
):
    kwargs = {"check_trigger": (1, "epoch"), **kwargs}
    for as_tensor in (True, False):
        trainer = get_trainer_with_mock_updater(stop_trigger=None, iter_per_epoch=1)
        trigger = get_trigger(triggers.EarlyStoppingTrigger(monitor=monitor, **kwargs))
        _run(trainer, trigger, monitor, values, expected, as_tensor)


@case_table
def test_resume_midway_continues_the_same_sequence(kwargs, monitor, values, expected):
    for resume in (1, 3):
        trainer = get_trainer_with_mock_updater(stop_trigger=None, iter_per_epoch=1)
        trigger = triggers.EarlyStoppingTrigger(monitor=monitor, **kwargs)
        _run(trainer, trigger, monitor, values[:resume], expected[:resume])
        fresh = triggers.EarlyStoppingTrigger(monitor=monitor, **kwargs)
        load(save(trigger), fresh)
        assert (fresh.count, fresh.best) == (trigger.count, trigger.best)
        _run(trainer, fresh, monitor, values[resume:], expected[resume:])


def test_stops_a_trainer_and_reports_training_length():
    trigger = triggers.EarlyStoppingTrigger(
        monitor="main/loss",
        patience=2,
        check_trigger=(1, "epoch"),
        max_trigger=(10, "epoch"),
    )
    assert trigger.get_training_length() == (10, "epoch")
    trainer = get_trainer_with_mock_updater(stop_trigger=trigger, iter_per_epoch=2)
    losses = [5, 5, 3, 3, 4, 4, 4, 4, 1, 1]

    def report_loss(t):
        t.observation["main/loss"] = _tensor(losses[t.updater.iteration - 1])

    trainer.extend(report_loss, trigger=(1, "iteration"))
    trainer.run()
    # Epoch means 5, 3, 4, 4: two checks without improvement end epoch 4.
    assert trainer.updater.iteration == 8
    assert trigger.best == 3.0


def test_max_trigger_bounds_the_trainer():
    trigger = triggers.EarlyStoppingTrigger(max_trigger=(5, "iteration"))
    trainer = get_trainer_with_mock_updater(stop_trigger=trigger, iter_per_epoch=2)
    trainer.extend(
        lambda t: t.observation.update({"main/loss": 1.0}), trigger=(1, "iteration")
    )
    trainer.run()
    assert trainer.updater.iteration == 5


def test_missing_monitor_at_a_check_warns_and_does_not_stop():
    trainer = get_trainer_with_mock_updater(stop_trigger=None, iter_per_epoch=1)
    trigger = triggers.EarlyStoppingTrigger(monitor="validation/main/loss", patience=1)
    trainer.updater.update()
    trainer.observation = {"main/loss": 1.0}
    with pytest.warns(UserWarning, match="validation/main/loss is not in observation"):
        assert trigger(trainer) is False
    assert trigger.count == 0


@pytest.mark.parametrize(
    ("monitor", "mode", "expected"),
    [
        ("main/accuracy", "auto", "early stopping: operator is greater\n"),
        ("main/loss", "auto", "early stopping: operator is less\n"),
        ("main/loss", "max", "early stopping: operator is greater\n"),
    ],
    ids=["auto_accuracy", "auto_loss", "max"],
)
def test_verbose_prints_the_direction(capsys, monitor, mode, expected):
    triggers.EarlyStoppingTrigger(monitor=monitor, mode=mode, verbose=True)
    assert capsys.readouterr().out == expected


def test_verbose_prints_when_it_stops(capsys):
    trainer = get_trainer_with_mock_updater(stop_trigger=None, iter_per_epoch=1)
    trigger = triggers.EarlyStoppingTrigger(patience=1, verbose=True)
    capsys.readouterr()
    _run(trainer, trigger, "main/loss", [1, 2], [False, True])
    assert capsys.readouterr().out == "Epoch 2: early stopping\n"


BAD_ARGS = [
    (
        {"mode": "maximum"},
        ValueError,
        "mode must be 'auto', 'min' or 'max'. Received: mode='maximum'",
    ),
    ({"patience": 1.5}, TypeError, "patience must be an int. Received: patience=1.5"),
    ({"patience": -1}, ValueError, "patience=-1"),
    ({"patience": 2, "patients": 2}, TypeError, "patients"),
    ({"patiance": 2}, TypeError, "patiance"),
    ({"monitor": None}, TypeError, "monitor=None"),
    ({"check_trigger": (1, "epochs")}, ValueError, "unit='epochs'"),
    ({"max_trigger": 10}, TypeError, "trigger=10"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    BAD_ARGS,
    ids=[
        "mode",
        "patience_float",
        "patience_negative",
        "both_aliases",
        "unknown_kwarg",
        "monitor",
        "check_unit",
        "max_trigger",
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=re.escape(match)):
        triggers.EarlyStoppingTrigger(**kwargs)
