"""InverseShift: Chainer's sequences on a real optimizer, resume, bad input."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from _shift_util import mock_trainer, real_trainer

from ktrainer.serializers import load_npz, save_npz
from ktrainer.training import PRIORITY_READER
from ktrainer.training.extensions.inverse_shift import InverseShift


def _expected(init, gamma, power, target, n):
    values = []
    for t in range(n + 1):
        value = init * (1 + gamma * t) ** (-power)
        if target is not None and t > 0:
            ratio = value / target
            if (power < 0 and ratio > 1) or (power >= 0 and ratio < 1):
                value = target
        values.append(value)
    return values


# Chainer's test table (recorded every iteration, shifted every 4th):
# (init, gamma, power, target, values after 0, 1, 2 calls).
CASES = [
    (3.0, 1.0, 1.0, None, [3.0, 1.5, 1.0]),
    (3.0, 1.0, 1.0, 1.8, [3.0, 1.8, 1.8]),
    (-3.0, 1.0, 1.0, -1.8, [-3.0, -1.8, -1.8]),
    (3.0, 1.0, -2.0, None, [3.0, 12.0, 27.0]),
    (3.0, 1.0, -2.0, 4.0, [3.0, 4.0, 4.0]),
    (-3.0, 1.0, -2.0, -4.0, [-3.0, -4.0, -4.0]),
]
IDS = ["decay", "decay-target", "neg-target", "grow", "grow-target", "neg-grow"]


@pytest.mark.parametrize(("init", "gamma", "power", "target", "expect"), CASES, ids=IDS)
@pytest.mark.parametrize("init_from", ["argument", "optimizer"])
def test_chainer_sequence_every_four_iterations(
    init, gamma, power, target, expect, init_from
):
    optimizer = keras.optimizers.SGD(init if init_from == "optimizer" else 0.0)
    ext = InverseShift(
        "lr", gamma, power, init if init_from == "argument" else None, target, optimizer
    )
    trainer, values = mock_trainer(ext, 12, optimizer, interval=4)
    trainer.run()
    np.testing.assert_allclose(values, [e for e in expect for _ in range(4)], rtol=1e-6)


def test_learning_rate_of_real_training(tmp_out):
    ext = InverseShift("learning_rate", 0.5, 0.75, target=0.04)
    trainer, values = real_trainer(ext, 10, tmp_out)
    trainer.run()
    np.testing.assert_allclose(values, _expected(0.1, 0.5, 0.75, 0.04, 10), rtol=1e-6)


def test_resume_mid_way_continues_the_sequence(tmp_out):
    path = os.path.join(tmp_out, "snapshot.npz")
    first, _ = real_trainer(InverseShift("lr", 0.5, 0.75), 4, tmp_out)
    first.run()
    save_npz(path, first)

    ext = InverseShift("lr", 0.5, 0.75)
    second, values = real_trainer(ext, 10, tmp_out)
    load_npz(path, second)
    assert ext._t == 4
    # A snapshot of a Chainer optimizer does not keep its hyperparameters:
    # initialize must set the value for the restored call count.
    second.updater.get_optimizer().learning_rate.assign(123.0)
    second.run()

    np.testing.assert_allclose(
        values, _expected(0.1, 0.5, 0.75, None, 10)[4:], rtol=1e-6
    )


def test_schedule_learning_rate_is_rejected_at_initialize():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    optimizer = keras.optimizers.SGD(schedule, name="sgd_sched")
    trainer, _ = mock_trainer(
        InverseShift("lr", 1.0, 1.0, optimizer=optimizer), 2, optimizer
    )
    with pytest.raises(TypeError, match=r"'learning_rate'.*'sgd_sched'.*float"):
        trainer.run()


BAD_ARGS = [
    (dict(gamma=-1.0, power=1.0), ValueError, "gamma must be non-negative"),
    (dict(gamma=1.0, power="p"), TypeError, "power must be"),
    (dict(gamma=True, power=1.0), TypeError, "gamma must be"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    BAD_ARGS,
    ids=["negative-gamma", "power", "gamma-bool"],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        InverseShift("lr", **kwargs)


def test_defaults():
    ext = InverseShift("lr", 1.0, 1.0)
    assert ext.trigger == (1, "iteration")
    assert ext.priority == PRIORITY_READER
    assert ext.model_state == "write"
