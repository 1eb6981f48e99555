"""LinearShift: Chainer's sequence on a real optimizer, resume, bad input."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from _shift_util import mock_trainer, real_trainer

from ktrainer.serializers import load_npz, save_npz
from ktrainer.training import PRIORITY_READER
from ktrainer.training.extensions.linear_shift import LinearShift


def _expected(value_range, time_range, n):
    (v1, v2), (t1, t2) = value_range, time_range
    values = []
    for t in range(n + 1):
        if t <= t1:
            values.append(v1)
        elif t >= t2:
            values.append(v2)
        else:
            values.append(v1 + (t - t1) / (t2 - t1) * (v2 - v1))
    return values


def test_chainer_sequence():
    # Chainer's test: value_range (2, 6), time_range (1, 3).
    optimizer = keras.optimizers.SGD(0.0)
    trainer, values = mock_trainer(
        LinearShift("learning_rate", (2.0, 6.0), (1, 3), optimizer), 5, optimizer
    )
    trainer.run()
    # Recorded before each call: the values after 0, 1, ... 4 calls.
    np.testing.assert_allclose(values, [2.0, 2.0, 4.0, 6.0, 6.0], rtol=1e-6)


def test_learning_rate_of_real_training(tmp_out):
    ext = LinearShift("learning_rate", (0.1, 0.01), (2, 7))
    trainer, values = real_trainer(ext, 10, tmp_out)
    trainer.run()
    np.testing.assert_allclose(values, _expected((0.1, 0.01), (2, 7), 10), rtol=1e-6)


def test_first_value_comes_from_the_range_not_the_optimizer(tmp_out):
    trainer, values = real_trainer(LinearShift("lr", (0.5, 0.0), (0, 4)), 5, tmp_out)
    trainer.run()
    np.testing.assert_allclose(values, [0.5, 0.375, 0.25, 0.125, 0.0, 0.0], rtol=1e-6)


def test_resume_mid_way_continues_the_sequence(tmp_out):
    path = os.path.join(tmp_out, "snapshot.npz")
    first, _ = real_trainer(LinearShift("lr", (0.1, 0.01), (2, 7)), 4, tmp_out)
    first.run()
    save_npz(path, first)

    ext = LinearShift("lr", (0.1, 0.01), (2, 7))
    second, values = real_trainer(ext, 10, tmp_out)
    load_npz(path, second)
    assert ext._t == 4
    # A snapshot of a Chainer optimizer does not keep its hyperparameters:
    # initialize must set the value for the restored call count.
    second.updater.get_optimizer().learning_rate.assign(123.0)
    second.run()

    np.testing.assert_allclose(
        values, _expected((0.1, 0.01), (2, 7), 10)[4:], rtol=1e-6
    )


def test_schedule_learning_rate_is_rejected_at_initialize():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    optimizer = keras.optimizers.Adam(schedule, name="adam_sched")
    trainer, _ = mock_trainer(
        LinearShift("lr", (0.1, 0.0), (0, 5), optimizer), 2, optimizer
    )
    with pytest.raises(TypeError, match=r"'learning_rate'.*'adam_sched'.*float"):
        trainer.run()


BAD_ARGS = [
    (
        dict(value_range=(1.0,), time_range=(0, 1)),
        TypeError,
        r"value_range must be a pair",
    ),
    (dict(value_range=(1.0, "a"), time_range=(0, 1)), TypeError, r"value_range\[1\]"),
    (
        dict(value_range=(1.0, 0.0), time_range=5),
        TypeError,
        "time_range must be a pair",
    ),
    (dict(value_range=(1.0, 0.0), time_range=(5, 2)), ValueError, "t1 <= t2"),
    (
        dict(value_range=(1.0, 0.0), time_range=(0, 2), optimizer=1),
        TypeError,
        "optimizer",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    BAD_ARGS,
    ids=["short-range", "range-type", "time-type", "time-order", "optimizer"],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        LinearShift("lr", **kwargs)


def test_defaults():
    ext = LinearShift("lr", (1.0, 0.0), (0, 1))
    assert ext.trigger == (1, "iteration")
    assert ext.priority == PRIORITY_READER
    assert ext.model_state == "write"
