"""Every stateful trigger resumes exactly through a real HDF5 snapshot."""

from __future__ import annotations

import os

import keras
import pytest

from ktrainer.serializers import load_hdf5, save_hdf5
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import triggers

VALUES = [3.0, 1.0, 2.0, 2.5, 0.5, 4.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]

# (name, factory): each trigger is driven for len(VALUES) iterations.
FACTORIES = [
    ("interval_epoch", lambda: triggers.IntervalTrigger(0.75, "epoch")),
    ("interval_iteration", lambda: triggers.IntervalTrigger(3, "iteration")),
    ("manual", lambda: triggers.ManualScheduleTrigger([2, 5, 9], "iteration")),
    ("max", lambda: triggers.MaxValueTrigger("v", (2, "iteration"))),
    ("min", lambda: triggers.MinValueTrigger("v", (0.5, "epoch"))),
    (
        "early_stopping",
        lambda: triggers.EarlyStoppingTrigger(
            (2, "iteration"), monitor="v", patience=2, max_trigger=(11, "iteration")
        ),
    ),
    ("once_call_on_resume", lambda: triggers.OnceTrigger(call_on_resume=True)),
]


def _drive(trainer, trigger, start, stop):
    fired = []
    for i in range(start, stop):
        trainer.updater.update()
        # Mixed host floats and backend tensors, as real reports can be.
        value = VALUES[i] if i % 2 else keras.ops.convert_to_tensor(VALUES[i])
        trainer.observation = {"v": value}
        fired.append(trigger(trainer))
    return fired


@pytest.mark.parametrize(
    "make", [f for _, f in FACTORIES], ids=[n for n, _ in FACTORIES]
)
def test_save_midway_load_into_fresh_trigger_and_continue(tmp_path, make):
    trainer = get_trainer_with_mock_updater(stop_trigger=None, iter_per_epoch=4)
    reference = _drive(trainer, make(), 0, len(VALUES))
    for resume in (3, 5):
        trainer = get_trainer_with_mock_updater(stop_trigger=None, iter_per_epoch=4)
        trigger = make()
        before = _drive(trainer, trigger, 0, resume)
        path = os.path.join(tmp_path, f"trigger_{resume}.h5")
        save_hdf5(path, trigger)
        fresh = make()
        load_hdf5(path, fresh)
        after = _drive(trainer, fresh, resume, len(VALUES))
        if isinstance(fresh, triggers.OnceTrigger):
            assert after[0] is True  # call_on_resume fires once more
            after[0] = reference[resume]
        assert before + after == reference, f"resume={resume}"


def test_time_trigger_through_hdf5(tmp_path):
    trigger = triggers.TimeTrigger(2.5)
    trigger._next_time = 7.5
    path = os.path.join(tmp_path, "trigger.h5")
    save_hdf5(path, trigger)
    fresh = triggers.TimeTrigger(2.5)
    load_hdf5(path, fresh)
    assert fresh._next_time == 7.5
