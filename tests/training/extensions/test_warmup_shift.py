"""WarmupShift: Chainer's sequences on a real optimizer, resume, bad input."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from _shift_util import mock_trainer, real_trainer

from ktrainer.serializers import load_npz, save_npz
from ktrainer.training import PRIORITY_READER
from ktrainer.training.extensions.warmup_shift import WarmupShift


def _expected(warmup_start, warmup_iter, init, n):
    values = [warmup_start]
    for t in range(1, n + 1):
        if t <= warmup_iter:
            values.append((t * init + (warmup_iter - t) * warmup_start) / warmup_iter)
        else:
            values.append(values[-1])
    return values


# Chainer's test table: (init, warmup_start, warmup_iter, values after
# 0, warmup_iter - 1, warmup_iter and warmup_iter + 1 calls).
CASES = [
    (1, 0.1, 100, [0.1, 0.991, 1, 1]),
    (0.1, 1, 10, [1, 0.19, 0.1, 0.1]),
    (1, -1, 10, [-1, 0.8, 1, 1]),
    (1, -1, 2, [-1, 0, 1, 1]),
    (0.1, 1, 2, [1, 0.55, 0.1, 0.1]),
]


@pytest.mark.parametrize(
    ("init", "warmup_start", "warmup_iter", "expect"),
    CASES,
    ids=["up-100", "down-10", "neg-10", "neg-2", "down-2"],
)
def test_chainer_sequence(init, warmup_start, warmup_iter, expect):
    optimizer = keras.optimizers.SGD(0.0)
    ext = WarmupShift("lr", warmup_start, warmup_iter, init, optimizer)
    trainer, values = mock_trainer(ext, warmup_iter + 2, optimizer)
    trainer.run()
    picked = [values[i] for i in (0, warmup_iter - 1, warmup_iter, warmup_iter + 1)]
    np.testing.assert_allclose(picked, expect, rtol=1e-6, atol=1e-7)


def test_warmup_start_none_takes_the_optimizer_value():
    optimizer = keras.optimizers.SGD(0.4)
    trainer, values = mock_trainer(
        WarmupShift("lr", None, 2, 0.2, optimizer), 4, optimizer
    )
    trainer.run()
    np.testing.assert_allclose(values, [0.4, 0.3, 0.2, 0.2], rtol=1e-6)


def test_later_calls_leave_the_attribute_alone():
    optimizer = keras.optimizers.SGD(0.0)
    ext = WarmupShift("lr", 0.0, 2, 1.0, optimizer)
    trainer, values = mock_trainer(ext, 3, optimizer)
    trainer.run()
    optimizer.learning_rate.assign(7.0)
    ext(trainer)
    assert values == [0.0, 0.5, 1.0]
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == 7.0


def test_learning_rate_of_real_training(tmp_out):
    # init=None warms up to the learning rate the optimizer was created with.
    ext = WarmupShift("learning_rate", 0.01, 6)
    trainer, values = real_trainer(ext, 10, tmp_out, learning_rate=0.1)
    trainer.run()
    np.testing.assert_allclose(values, _expected(0.01, 6, 0.1, 10), rtol=1e-6)


def test_resume_mid_way_continues_the_sequence(tmp_out):
    path = os.path.join(tmp_out, "snapshot.npz")
    first, _ = real_trainer(WarmupShift("lr", 0.01, 6), 3, tmp_out)
    first.run()
    save_npz(path, first)

    ext = WarmupShift("lr", 0.01, 6)
    second, values = real_trainer(ext, 10, tmp_out)
    load_npz(path, second)
    assert ext._t == 3
    # A snapshot of a Chainer optimizer does not keep its hyperparameters:
    # initialize must set the value for the restored call count.
    second.updater.get_optimizer().learning_rate.assign(123.0)
    second.run()

    np.testing.assert_allclose(values, _expected(0.01, 6, 0.1, 10)[3:], rtol=1e-6)


def test_schedule_learning_rate_is_rejected_at_initialize():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    optimizer = keras.optimizers.SGD(schedule, name="sgd_sched")
    trainer, _ = mock_trainer(WarmupShift("lr", 0.0, 5, 0.1, optimizer), 2, optimizer)
    with pytest.raises(TypeError, match=r"'learning_rate'.*'sgd_sched'.*float"):
        trainer.run()


BAD_ARGS = [
    (
        dict(warmup_start=0.0, warmup_iter=0),
        ValueError,
        "warmup_iter must be a positive int",
    ),
    (
        dict(warmup_start=0.0, warmup_iter=2.0),
        TypeError,
        "warmup_iter must be a positive int",
    ),
    (dict(warmup_start="a", warmup_iter=2), TypeError, "warmup_start must be"),
    (dict(warmup_start=0.0, warmup_iter=2, init=[1]), TypeError, "init must be"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    BAD_ARGS,
    ids=["iter-zero", "iter-type", "start", "init"],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        WarmupShift("lr", **kwargs)


def test_defaults():
    ext = WarmupShift("lr", 0.0, 5)
    assert ext.trigger == (1, "iteration")
    assert ext.priority == PRIORITY_READER
    assert ext.model_state == "write"
