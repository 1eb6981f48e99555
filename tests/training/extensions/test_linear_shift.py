"""LinearShift: Chainer's sequence on a real optimizer, resume, bad input."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer.iterators import SerialIterator
from ktrainer.serializers import load_npz, save_npz
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import PRIORITY_READER, Trainer
from ktrainer.training.extensions.linear_shift import LinearShift
from ktrainer.training.updaters import StandardUpdater


def _lr(optimizer) -> float:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _recorder(values, optimizer=None):
    def record(trainer):
        opt = optimizer or trainer.updater.get_optimizer("main")
        values.append(_lr(opt))

    return record


def _real_trainer(extension, stop, out, learning_rate=0.1):
    """A trainer of a real model; `values` gets the learning rate each update uses."""
    model = make_classifier(optimizer=keras.optimizers.SGD(learning_rate))
    updater = StandardUpdater(SerialIterator(make_dataset(), 16), model)
    trainer = Trainer(updater, (stop, "iteration"), out=out)
    trainer.extend(extension)
    values: list[float] = []
    # Below the shift's priority, and once before training: it sees the
    # value that the next update uses.
    trainer.extend(
        _recorder(values),
        name="record",
        priority=PRIORITY_READER - 1,
        call_before_training=True,
    )
    return trainer, values


def _mock_trainer(extension, stop, optimizer, interval=1):
    """A counting trainer; `values` gets the value before each shift call."""
    trainer = get_trainer_with_mock_updater((stop, "iteration"))
    trainer.extend(extension, trigger=(interval, "iteration"))
    values: list[float] = []
    trainer.extend(
        _recorder(values, optimizer), name="record", priority=PRIORITY_READER + 1
    )
    return trainer, values


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
    trainer, values = _mock_trainer(
        LinearShift("learning_rate", (2.0, 6.0), (1, 3), optimizer), 5, optimizer
    )
    trainer.run()
    # Recorded before each call: the values after 0, 1, ... 4 calls.
    np.testing.assert_allclose(values, [2.0, 2.0, 4.0, 6.0, 6.0], rtol=1e-6)


def test_learning_rate_of_real_training(tmp_out):
    ext = LinearShift("learning_rate", (0.1, 0.01), (2, 7))
    trainer, values = _real_trainer(ext, 10, tmp_out)
    trainer.run()
    np.testing.assert_allclose(values, _expected((0.1, 0.01), (2, 7), 10), rtol=1e-6)


def test_first_value_comes_from_the_range_not_the_optimizer(tmp_out):
    trainer, values = _real_trainer(LinearShift("lr", (0.5, 0.0), (0, 4)), 5, tmp_out)
    trainer.run()
    np.testing.assert_allclose(values, [0.5, 0.375, 0.25, 0.125, 0.0, 0.0], rtol=1e-6)


def test_resume_mid_way_continues_the_sequence(tmp_out):
    path = os.path.join(tmp_out, "snapshot.npz")
    first, _ = _real_trainer(LinearShift("lr", (0.1, 0.01), (2, 7)), 4, tmp_out)
    first.run()
    save_npz(path, first)

    ext = LinearShift("lr", (0.1, 0.01), (2, 7))
    second, values = _real_trainer(ext, 10, tmp_out)
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
    trainer, _ = _mock_trainer(
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
    assert ext.needs_model_state is True
