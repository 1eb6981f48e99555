"""observe_value and observe_lr: what they record, when, and bad input."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer.iterators import SerialIterator
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import PRIORITY_READER, PRIORITY_WRITER, Trainer
from ktrainer.training.extensions.exponential_shift import ExponentialShift
from ktrainer.training.extensions.value_observation import observe_lr, observe_value
from ktrainer.training.updaters import StandardUpdater


def _observed(trainer, key):
    """Records `trainer.observation.get(key)` at the end of every iteration."""
    seen: list = []
    trainer.extend(
        lambda t: seen.append(t.observation.get(key)),
        name="record",
        priority=PRIORITY_READER - 1,
    )
    return seen


def _to_float(value) -> float:
    return float(keras.ops.convert_to_numpy(value))


def _real_trainer(stop, out, optimizer=None):
    model = make_classifier(optimizer=optimizer or keras.optimizers.SGD(0.1))
    updater = StandardUpdater(SerialIterator(make_dataset(), 16), model)
    return Trainer(updater, (stop, "iteration"), out=out)


def test_observe_value_records_once_per_epoch_by_default():
    trainer = get_trainer_with_mock_updater((9, "iteration"), iter_per_epoch=3)
    trainer.extend(observe_value("it", lambda t: t.updater.iteration * 10))
    seen = _observed(trainer, "it")
    trainer.run()
    assert seen == [None, None, 30, None, None, 60, None, None, 90]


def test_observe_value_defaults():
    ext = observe_value("key", lambda t: 1)
    assert ext.trigger == (1, "epoch")
    assert ext.priority == PRIORITY_WRITER
    assert ext.default_name == "_observe_value"  # Chainer's name
    assert ext.model_state == "read"
    lr_ext = observe_lr()
    assert (lr_ext.trigger, lr_ext.priority) == ((1, "epoch"), PRIORITY_WRITER)
    assert lr_ext.model_state == "read"


def test_observe_lr_reports_the_learning_rate_each_update_used(tmp_out):
    trainer = _real_trainer(6, tmp_out)
    trainer.extend(ExponentialShift("lr", 0.5))
    trainer.extend(observe_lr(), trigger=(1, "iteration"))
    seen = _observed(trainer, "lr")
    trainer.run()
    # observe_lr (a writer) runs before the shift (a reader) of the same
    # iteration: it sees the value the update used, 0.1 * 0.5 ** t, t = 0..5.
    np.testing.assert_allclose(
        [_to_float(v) for v in seen], [0.1 * 0.5**t for t in range(6)], rtol=1e-6
    )


def test_observe_lr_keeps_the_value_of_its_iteration(tmp_out):
    trainer = _real_trainer(1, tmp_out)
    trainer.extend(observe_lr(), trigger=(1, "iteration"))
    seen = _observed(trainer, "lr")
    trainer.run()
    trainer.updater.get_optimizer().learning_rate.assign(5.0)
    assert not isinstance(seen[0], keras.Variable)
    assert _to_float(seen[0]) == pytest.approx(0.1)


def test_observe_lr_of_a_named_optimizer_under_a_custom_key(tmp_out):
    model = make_classifier(optimizer=keras.optimizers.Adam(0.25))
    updater = StandardUpdater(
        {"main": SerialIterator(make_dataset(), 16)}, {"main": model}
    )
    trainer = Trainer(updater, (2, "iteration"), out=tmp_out)
    trainer.extend(observe_lr("main", "main/lr"), trigger=(2, "iteration"))
    seen = _observed(trainer, "main/lr")
    trainer.run()
    assert seen[0] is None
    assert _to_float(seen[1]) == pytest.approx(0.25)


def test_observe_lr_reports_a_schedule_value(tmp_out):
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.5, 0.05])
    trainer = _real_trainer(3, tmp_out, keras.optimizers.SGD(schedule))
    trainer.extend(observe_lr(), trigger=(1, "iteration"))
    seen = _observed(trainer, "lr")
    trainer.run()
    # The schedule's value at the optimizer's iteration count after each update.
    np.testing.assert_allclose([_to_float(v) for v in seen], [0.5, 0.05, 0.05])


BAD_ARGS = [
    (lambda: observe_value(1, lambda t: 0), TypeError, "observation_key must be a str"),
    (lambda: observe_value("k", 3), TypeError, "target_func must be a callable"),
    (lambda: observe_lr(0), TypeError, "optimizer_name must be a str"),
    (lambda: observe_lr("main", None), TypeError, "observation_key must be a str"),
]


@pytest.mark.parametrize(
    ("build", "error", "match"),
    BAD_ARGS,
    ids=["key", "func", "optimizer-name", "lr-key"],
)
def test_bad_arguments_name_the_argument(build, error, match):
    with pytest.raises(error, match=match):
        build()
