"""ExponentialShift: Chainer's sequences on a real optimizer, resume, bad input."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from _shift_util import mock_trainer, real_trainer
from conftest import make_classifier, make_dataset

from ktrainer.iterators import SerialIterator
from ktrainer.serializers import load_npz, save_npz
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import PRIORITY_READER, Trainer
from ktrainer.training.extensions.exponential_shift import ExponentialShift
from ktrainer.training.updaters import StandardUpdater


def _expected(init, rate, target, n):
    values = []
    for t in range(n + 1):
        value = init * rate**t
        if target is not None and t > 0:
            ratio = value / target
            if (rate > 1 and ratio > 1) or (rate <= 1 and ratio < 1):
                value = target
        values.append(value)
    return values


# Chainer's test table: (init, rate, target, values after 0, 1, 2 calls).
CASES = [
    (2.0, 0.5, None, [2.0, 1.0, 0.5]),
    (2.0, 0.5, 1.2, [2.0, 1.2, 1.2]),
    (-2.0, 0.5, -1.2, [-2.0, -1.2, -1.2]),
    (2.0, 2.0, None, [2.0, 4.0, 8.0]),
    (2.0, 2.0, 3.0, [2.0, 3.0, 3.0]),
    (-2.0, 2.0, -3.0, [-2.0, -3.0, -3.0]),
]
IDS = ["decay", "decay-target", "negative-target", "grow", "grow-target", "neg-grow"]


@pytest.mark.parametrize(("init", "rate", "target", "expect"), CASES, ids=IDS)
@pytest.mark.parametrize("init_from", ["argument", "optimizer"])
def test_chainer_sequence_every_four_iterations(init, rate, target, expect, init_from):
    optimizer = keras.optimizers.SGD(init if init_from == "optimizer" else 0.0)
    ext = ExponentialShift(
        "learning_rate",
        rate,
        init=init if init_from == "argument" else None,
        target=target,
        optimizer=optimizer,
    )
    trainer, values = mock_trainer(ext, 12, optimizer, interval=4)
    trainer.run()

    # Recorded before the shift of the same iteration, as Chainer's test does.
    np.testing.assert_allclose(values, [e for e in expect for _ in range(4)], rtol=1e-6)


def test_learning_rate_of_real_training(tmp_out):
    ext = ExponentialShift("learning_rate", 0.8, target=0.03)
    trainer, values = real_trainer(ext, 10, tmp_out, learning_rate=0.1)
    trainer.run()
    np.testing.assert_allclose(values, _expected(0.1, 0.8, 0.03, 10), rtol=1e-6)


def test_lr_is_an_alias_of_learning_rate(tmp_out):
    trainer, values = real_trainer(ExponentialShift("lr", 0.5, init=0.2), 3, tmp_out)
    trainer.run()
    np.testing.assert_allclose(values, [0.2, 0.1, 0.05, 0.025], rtol=1e-6)


def test_shifted_learning_rate_reaches_the_updates(tmp_out):
    # With init 0 every update uses a zero learning rate instead of the
    # optimizer's 0.1, so the weights must not move.
    trainer, _ = real_trainer(ExponentialShift("learning_rate", 0.5, 0.0), 4, tmp_out)
    model = trainer.updater.get_model()
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_weights]
    trainer.run()
    for b, v in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), b)


def test_resume_mid_way_continues_the_sequence(tmp_out):
    # init comes from the optimizer, whose learning rate the snapshot then
    # restores to a shifted value: the extension must not take that as init.
    path = os.path.join(tmp_out, "snapshot.npz")
    first, _ = real_trainer(ExponentialShift("lr", 0.7, target=0.02), 4, tmp_out)
    first.run()
    save_npz(path, first)

    ext = ExponentialShift("lr", 0.7, target=0.02)
    second, values = real_trainer(ext, 10, tmp_out)
    load_npz(path, second)
    assert ext._t == 4
    # As with a Chainer optimizer, whose hyperparameters a snapshot does not
    # keep: initialize must set the value for the restored call count.
    second.updater.get_optimizer().learning_rate.assign(123.0)
    second.run()

    np.testing.assert_allclose(values, _expected(0.1, 0.7, 0.02, 10)[4:], rtol=1e-6)


@pytest.mark.parametrize(
    ("init", "target"), [(2.0, None), (2.0, 0.5)], ids=["init", "target"]
)
def test_resume_with_explicit_init(tmp_out, init, target):
    path = os.path.join(tmp_out, "snapshot.npz")
    optimizer = keras.optimizers.SGD(0.0)
    first, _ = mock_trainer(
        ExponentialShift("lr", 0.5, init, target, optimizer), 3, optimizer
    )
    first.run()
    save_npz(path, first)

    optimizer = keras.optimizers.SGD(0.0)
    ext = ExponentialShift("lr", 0.5, init, target, optimizer)
    second, values = mock_trainer(ext, 6, optimizer)
    load_npz(path, second)
    second.run()

    # The recorder runs before each call: it sees the values after 3..5 calls.
    np.testing.assert_allclose(values, _expected(init, 0.5, target, 5)[3:], rtol=1e-6)


def test_schedule_learning_rate_is_rejected_at_initialize(tmp_out):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    model = make_classifier(optimizer=keras.optimizers.SGD(schedule, name="opt"))
    updater = StandardUpdater(SerialIterator(make_dataset(), 16), model)
    trainer = Trainer(updater, (2, "iteration"), out=tmp_out)
    trainer.extend(ExponentialShift("learning_rate", 0.5))
    with pytest.raises(TypeError, match=r"'learning_rate'.*SGD optimizer 'opt'.*float"):
        trainer.run()


def test_plain_python_attribute_is_rejected():
    optimizer = keras.optimizers.SGD(0.1, momentum=0.5)
    trainer = get_trainer_with_mock_updater((2, "iteration"))
    trainer.extend(ExponentialShift("momentum", 0.5, optimizer=optimizer))
    with pytest.raises(TypeError, match=r"'momentum'.*traced"):
        trainer.run()


def test_unknown_attribute_is_rejected():
    optimizer = keras.optimizers.SGD(0.1)
    trainer = get_trainer_with_mock_updater((2, "iteration"))
    trainer.extend(ExponentialShift("beta_9", 0.5, optimizer=optimizer))
    with pytest.raises(AttributeError, match="'beta_9'"):
        trainer.run()


BAD_ARGS = [
    (dict(attr="lr", rate=-1.0), ValueError, "rate must be non-negative"),
    (dict(attr="lr", rate="fast"), TypeError, "rate must be a real number"),
    (dict(attr=3, rate=0.5), TypeError, "attr must be"),
    (dict(attr="lr", rate=0.5, init="x"), TypeError, "init must be"),
    (dict(attr="lr", rate=0.5, target=float("nan")), ValueError, "target must be"),
    (dict(attr="lr", rate=0.5, optimizer="sgd"), TypeError, "optimizer must be"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    BAD_ARGS,
    ids=["negative-rate", "rate-type", "attr", "init", "target", "optimizer"],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        ExponentialShift(**kwargs)


def test_defaults():
    ext = ExponentialShift("lr", 0.5)
    assert ext.trigger == (1, "iteration")
    assert ext.priority == PRIORITY_READER
    assert ext.model_state == "write"
