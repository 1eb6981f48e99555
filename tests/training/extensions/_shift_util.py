"""Helpers shared by the shift tests: trainers that record the learning rate."""

from __future__ import annotations

import keras
from conftest import make_classifier, make_dataset

from ktrainer.iterators import SerialIterator
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import PRIORITY_READER, Trainer
from ktrainer.training.updaters import StandardUpdater


def lr(optimizer) -> float:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def recorder(values, optimizer=None):
    def record(trainer):
        opt = optimizer or trainer.updater.get_optimizer("main")
        values.append(lr(opt))

    return record


def real_trainer(extension, stop, out, learning_rate=0.1):
    """A trainer of a real model; `values` gets the learning rate each update uses."""
    model = make_classifier(optimizer=keras.optimizers.SGD(learning_rate))
    updater = StandardUpdater(SerialIterator(make_dataset(), 16), model)
    trainer = Trainer(updater, (stop, "iteration"), out=out)
    trainer.extend(extension)
    values: list[float] = []
    # Below the shift's priority, and once when the run starts (after the
    # shift's initialize, also on a resume): it sees the value that the
    # next update uses.
    record = recorder(values)
    record.initialize = record
    trainer.extend(record, name="record", priority=PRIORITY_READER - 1)
    return trainer, values


def mock_trainer(extension, stop, optimizer, interval=1):
    """A counting trainer; `values` gets the value before each shift call."""
    trainer = get_trainer_with_mock_updater((stop, "iteration"))
    trainer.extend(extension, trigger=(interval, "iteration"))
    values: list[float] = []
    trainer.extend(
        recorder(values, optimizer), name="record", priority=PRIORITY_READER + 1
    )
    return trainer, values
