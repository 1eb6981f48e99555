"""MultistepShift: Chainer's sequences on a real optimizer, resume, bad input."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from _shift_util import mock_trainer, real_trainer

from ktrainer.serializers import load_npz, save_npz
from ktrainer.training import PRIORITY_READER
from ktrainer.training.extensions.multistep_shift import MultistepShift


def _expected(init, gamma, steps, n):
    return [init * gamma ** sum(s <= t for s in steps) for t in range(n + 1)]


# Chainer's test table: (init, gamma, step_value, values after 0..5 calls).
CASES = [
    (2.0, 0.1, [1, 3, 5], [2.0, 0.2, 0.2, 0.02, 0.02, 0.002]),
    (-2.0, 0.1, [1, 3, 5], [-2.0, -0.2, -0.2, -0.02, -0.02, -0.002]),
    (2.0, 2, [1, 3, 5], [2.0, 4.0, 4.0, 8.0, 8.0, 16.0]),
    (-2.0, 2, [1, 3, 5], [-2.0, -4.0, -4.0, -8.0, -8.0, -16.0]),
]


@pytest.mark.parametrize(
    ("init", "gamma", "step_value", "expect"),
    CASES,
    ids=["decay", "neg", "grow", "neg-grow"],
)
@pytest.mark.parametrize("init_from", ["argument", "optimizer"])
def test_chainer_sequence(init, gamma, step_value, expect, init_from):
    optimizer = keras.optimizers.SGD(init if init_from == "optimizer" else 0.0)
    ext = MultistepShift(
        "lr", gamma, step_value, init if init_from == "argument" else None, optimizer
    )
    trainer, values = mock_trainer(ext, 6, optimizer)
    trainer.run()
    np.testing.assert_allclose(values, expect, rtol=1e-6)


def test_learning_rate_of_real_training(tmp_out):
    ext = MultistepShift("learning_rate", 0.5, (2, 5, 8), None)
    trainer, values = real_trainer(ext, 10, tmp_out)
    trainer.run()
    np.testing.assert_allclose(values, _expected(0.1, 0.5, (2, 5, 8), 10), rtol=1e-6)


@pytest.mark.parametrize("init", [None, 0.3], ids=["init-from-optimizer", "init"])
def test_resume_mid_way_continues_the_sequence(tmp_out, init):
    path = os.path.join(tmp_out, "snapshot.npz")
    first, _ = real_trainer(MultistepShift("lr", 0.5, (2, 5, 8), init), 4, tmp_out)
    first.run()
    save_npz(path, first)

    ext = MultistepShift("lr", 0.5, (2, 5, 8), init)
    second, values = real_trainer(ext, 10, tmp_out)
    load_npz(path, second)
    assert (ext._t, ext._current_step) == (4, 1)
    # A snapshot of a Chainer optimizer does not keep its hyperparameters:
    # initialize must set the value of the restored step.
    second.updater.get_optimizer().learning_rate.assign(123.0)
    second.run()

    start = 0.1 if init is None else init
    np.testing.assert_allclose(
        values, _expected(start, 0.5, (2, 5, 8), 10)[4:], rtol=1e-6
    )


def test_schedule_learning_rate_is_rejected_at_initialize():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    optimizer = keras.optimizers.SGD(schedule, name="sgd_sched")
    ext = MultistepShift("lr", 0.1, [2], 0.1, optimizer)
    trainer, _ = mock_trainer(ext, 2, optimizer)
    with pytest.raises(TypeError, match=r"'learning_rate'.*'sgd_sched'.*float"):
        trainer.run()


BAD_ARGS = [
    (dict(gamma=None, step_value=[1], init=0.1), TypeError, "gamma must be"),
    (
        dict(gamma=0.1, step_value=3, init=0.1),
        TypeError,
        "step_value must be a sequence",
    ),
    (
        dict(gamma=0.1, step_value=[1.5], init=0.1),
        TypeError,
        "step_value must contain ints",
    ),
    (dict(gamma=0.1, step_value=[3, 1], init=0.1), ValueError, "ascending"),
    (dict(gamma=0.1, step_value=[1], init="a"), TypeError, "init must be"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    BAD_ARGS,
    ids=["gamma", "step-type", "step-items", "step-order", "init"],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        MultistepShift("lr", **kwargs)


def test_defaults():
    ext = MultistepShift("lr", 0.1, [1], None)
    assert ext.trigger == (1, "iteration")
    assert ext.priority == PRIORITY_READER
    assert ext.model_state == "write"
