"""StepShift: Chainer's sequence on a real optimizer, resume, bad input."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from _shift_util import mock_trainer, real_trainer

from ktrainer.serializers import load_npz, save_npz
from ktrainer.training import PRIORITY_READER
from ktrainer.training.extensions.step_shift import StepShift


def _expected(init, gamma, step, target, n):
    values = []
    for t in range(n + 1):
        value = init * gamma ** (t // step)
        if target is not None and t > 0:
            ratio = value / target
            if (gamma > 1 and ratio > 1) or (gamma <= 1 and ratio < 1):
                value = target
        values.append(value)
    return values


# (init, gamma, step, target, values after 0..9 calls); the first is Chainer's.
CASES = [
    (1.0, 2.0, 2, None, [1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 8.0, 8.0, 16.0, 16.0]),
    (1.0, 2.0, 2, 5.0, [1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 5.0, 5.0, 5.0, 5.0]),
    (-1.0, 0.5, 3, -0.3, [-1.0, -1.0, -1.0, -0.5, -0.5, -0.5, -0.3, -0.3, -0.3, -0.3]),
]


@pytest.mark.parametrize(
    ("init", "gamma", "step", "target", "expect"),
    CASES,
    ids=["chainer", "target", "neg"],
)
@pytest.mark.parametrize("init_from", ["argument", "optimizer"])
def test_sequence(init, gamma, step, target, expect, init_from):
    optimizer = keras.optimizers.SGD(init if init_from == "optimizer" else 0.0)
    ext = StepShift(
        "lr", gamma, step, init if init_from == "argument" else None, target, optimizer
    )
    trainer, values = mock_trainer(ext, 10, optimizer)
    trainer.run()
    np.testing.assert_allclose(values, expect, rtol=1e-6)


def test_learning_rate_of_real_training(tmp_out):
    ext = StepShift("learning_rate", 0.5, 3, target=0.02)
    trainer, values = real_trainer(ext, 10, tmp_out)
    trainer.run()
    np.testing.assert_allclose(values, _expected(0.1, 0.5, 3, 0.02, 10), rtol=1e-6)


@pytest.mark.parametrize("init", [None, 0.3], ids=["init-from-optimizer", "init"])
def test_resume_mid_way_continues_the_sequence(tmp_out, init):
    path = os.path.join(tmp_out, "snapshot.npz")
    first, _ = real_trainer(StepShift("lr", 0.5, 3, init), 4, tmp_out)
    first.run()
    save_npz(path, first)

    ext = StepShift("lr", 0.5, 3, init)
    second, values = real_trainer(ext, 10, tmp_out)
    load_npz(path, second)
    assert ext._t == 4
    # A snapshot of a Chainer optimizer does not keep its hyperparameters:
    # initialize must set the value for the restored call count.
    second.updater.get_optimizer().learning_rate.assign(123.0)
    second.run()

    start = 0.1 if init is None else init
    np.testing.assert_allclose(
        values, _expected(start, 0.5, 3, None, 10)[4:], rtol=1e-6
    )


def test_schedule_learning_rate_is_rejected_at_initialize():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    optimizer = keras.optimizers.SGD(schedule, name="sgd_sched")
    trainer, _ = mock_trainer(
        StepShift("lr", 0.5, 2, optimizer=optimizer), 2, optimizer
    )
    with pytest.raises(TypeError, match=r"'learning_rate'.*'sgd_sched'.*float"):
        trainer.run()


BAD_ARGS = [
    (dict(gamma=0.5, step=0), ValueError, "step must be a positive int"),
    (dict(gamma=0.5, step=1.5), TypeError, "step must be a positive int"),
    (dict(gamma="x", step=2), TypeError, "gamma must be"),
    (dict(gamma=0.5, step=2, target="t"), TypeError, "target must be"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    BAD_ARGS,
    ids=["step-zero", "step-type", "gamma", "target"],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        StepShift("lr", **kwargs)


def test_defaults():
    ext = StepShift("lr", 0.5, 2)
    assert ext.trigger == (1, "iteration")
    assert ext.priority == PRIORITY_READER
    assert ext.model_state == "write"
