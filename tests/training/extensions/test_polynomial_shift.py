"""PolynomialShift: Chainer's sequences on a real optimizer, resume, bad input."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from _shift_util import mock_trainer, real_trainer

from ktrainer.serializers import load_npz, save_npz
from ktrainer.training import PRIORITY_READER
from ktrainer.training.extensions.polynomial_shift import PolynomialShift


def _expected(init, rate, max_count, target, n):
    values = []
    for t in range(n + 1):
        value = init * max(1 - t / max_count, 0) ** rate
        if target is not None and t > 0:
            ratio = target / value if value else float("inf") * target
            if (rate > 0 and ratio > 1) or (rate <= 0 and ratio < 1):
                value = target
        values.append(value)
    return values


# Chainer's test table (recorded every iteration, shifted every 4th):
# (init, rate, max_count, target, values after 0, 1, 2 calls).
CASES = [
    (2.0, 0.5, 10, None, [2.0, 1.8973665961010275, 1.7888543819998317]),
    (2.0, 0.5, 5, 1.2, [2.0, 1.7888543819998317, 1.5491933384829668]),
    (-2.0, 0.5, 10, None, [-2.0, -1.8973665961010275, -1.7888543819998317]),
    (2.0, 0.5, 10, 1.8, [2.0, 1.8973665961010275, 1.8]),
]


@pytest.mark.parametrize(
    ("init", "rate", "max_count", "target", "expect"),
    CASES,
    ids=["decay", "target-unreached", "neg", "target"],
)
@pytest.mark.parametrize("init_from", ["argument", "optimizer"])
def test_chainer_sequence_every_four_iterations(
    init, rate, max_count, target, expect, init_from
):
    optimizer = keras.optimizers.SGD(init if init_from == "optimizer" else 0.0)
    ext = PolynomialShift(
        "lr",
        rate,
        max_count,
        init if init_from == "argument" else None,
        target,
        optimizer,
    )
    trainer, values = mock_trainer(ext, 12, optimizer, interval=4)
    trainer.run()
    np.testing.assert_allclose(values, [e for e in expect for _ in range(4)], rtol=1e-6)


def test_target_is_kept_when_the_value_reaches_zero():
    # Chainer divides by the value here and fails; the clamp holds instead.
    optimizer = keras.optimizers.SGD(0.0)
    ext = PolynomialShift("lr", 0.5, 2, 2.0, 0.1, optimizer)
    trainer, values = mock_trainer(ext, 4, optimizer)
    trainer.run()
    np.testing.assert_allclose(values, [2.0, 2 * 0.5**0.5, 0.1, 0.1], rtol=1e-6)


def test_learning_rate_of_real_training(tmp_out):
    ext = PolynomialShift("learning_rate", 2.0, 8, target=0.01)
    trainer, values = real_trainer(ext, 10, tmp_out)
    trainer.run()
    np.testing.assert_allclose(values, _expected(0.1, 2.0, 8, 0.01, 10), rtol=1e-6)


def test_resume_mid_way_continues_the_sequence(tmp_out):
    path = os.path.join(tmp_out, "snapshot.npz")
    first, _ = real_trainer(PolynomialShift("lr", 0.9, 10), 4, tmp_out)
    first.run()
    save_npz(path, first)

    ext = PolynomialShift("lr", 0.9, 10)
    second, values = real_trainer(ext, 10, tmp_out)
    load_npz(path, second)
    assert ext._t == 4
    # A snapshot of a Chainer optimizer does not keep its hyperparameters:
    # initialize must set the value for the restored call count.
    second.updater.get_optimizer().learning_rate.assign(123.0)
    second.run()

    np.testing.assert_allclose(
        values, _expected(0.1, 0.9, 10, None, 10)[4:], rtol=1e-6, atol=1e-9
    )


def test_schedule_learning_rate_is_rejected_at_initialize():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    optimizer = keras.optimizers.SGD(schedule, name="sgd_sched")
    ext = PolynomialShift("lr", 0.5, 10, optimizer=optimizer)
    trainer, _ = mock_trainer(ext, 2, optimizer)
    with pytest.raises(TypeError, match=r"'learning_rate'.*'sgd_sched'.*float"):
        trainer.run()


BAD_ARGS = [
    (dict(rate=0.5, max_count=0), ValueError, "max_count must be a positive int"),
    (dict(rate=0.5, max_count=2.5), TypeError, "max_count must be a positive int"),
    (dict(rate=None, max_count=10), TypeError, "rate must be"),
    (
        dict(rate=0.5, max_count=10, init=float("inf")),
        ValueError,
        "init must be finite",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    BAD_ARGS,
    ids=["count-zero", "count-type", "rate", "init"],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        PolynomialShift("lr", **kwargs)


def test_defaults():
    ext = PolynomialShift("lr", 0.5, 10)
    assert ext.trigger == (1, "iteration")
    assert ext.priority == PRIORITY_READER
    assert ext.model_state == "write"
