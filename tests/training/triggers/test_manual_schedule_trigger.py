"""ManualScheduleTrigger: Chainer's firing tables, `finished`, resume, errors."""

from __future__ import annotations

import random
import re

import pytest
from _trigger_testing import DictDeserializer, load, save

from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import triggers


def _finished_from(pos, num=7):
    return [i >= pos for i in range(num)]


# (iter_per_epoch, schedule, resume, expected firing, expected finished)
CASES = [
    (
        2,
        (2, "iteration"),
        3,
        [False, True, False, False, False, False, False],
        _finished_from(1),
    ),
    (
        2,
        ([2, 4], "iteration"),
        3,
        [False, True, False, True, False, False, False],
        _finished_from(3),
    ),
    (
        3,
        (1, "epoch"),
        3,
        [False, False, True, False, False, False, False],
        _finished_from(2),
    ),
    (
        3,
        ([1, 2], "epoch"),
        4,
        [False, False, True, False, False, True, False],
        _finished_from(5),
    ),
    (
        2,
        (1.5, "epoch"),
        4,
        [False, False, True, False, False, False, False],
        _finished_from(2),
    ),
    (
        2,
        ([1.5, 2.5], "epoch"),
        4,
        [False, False, True, False, True, False, False],
        _finished_from(4),
    ),
    (
        2.5,
        (1, "epoch"),
        4,
        [False, False, True, False, False, False, False],
        _finished_from(2),
    ),
    (
        2.5,
        ([1, 2], "epoch"),
        4,
        [False, False, True, False, True, False, False],
        _finished_from(4),
    ),
    (0.5, (1, "epoch"), 4, [True] + [False] * 6, _finished_from(0)),
    (0.5, ([1, 2], "epoch"), 4, [True] + [False] * 6, _finished_from(0)),
    (
        2,
        ((4, 2), "iteration"),
        3,
        [False, True, False, True, False, False, False],
        _finished_from(3),
    ),
]
IDS = [
    "single_iteration",
    "multiple_iteration",
    "single_epoch",
    "multiple_epoch",
    "single_fractional_epoch",
    "multiple_fractional_epoch",
    "single_unaligned_epoch",
    "multiple_unaligned_epoch",
    "single_tiny_epoch",
    "multiple_tiny_epoch",
    "unsorted_tuple",
]
case_table = pytest.mark.parametrize(
    ("iter_per_epoch", "schedule", "resume", "expected", "finished"), CASES, ids=IDS
)


def _trainer(iter_per_epoch):
    return get_trainer_with_mock_updater(
        stop_trigger=None, iter_per_epoch=iter_per_epoch
    )


def _run(trainer, trigger, expected, finished, mask=None, pending=False):
    for i, (want, done) in enumerate(zip(expected, finished)):
        trainer.updater.update()
        pending = pending or want
        if mask is None or mask[i]:
            assert trigger(trainer) == pending, f"after update {i + 1}"
            assert trigger.finished == done, f"after update {i + 1}"
            pending = False
    return pending


@case_table
def test_fires_at_points_and_then_finishes(
    iter_per_epoch, schedule, resume, expected, finished
):
    trainer = _trainer(iter_per_epoch)
    trigger = triggers.ManualScheduleTrigger(*schedule)
    assert trigger.finished is False
    _run(trainer, trigger, expected, finished)


@case_table
def test_resume_midway_continues_the_same_sequence(
    iter_per_epoch, schedule, resume, expected, finished
):
    trainer = _trainer(iter_per_epoch)
    trigger = triggers.ManualScheduleTrigger(*schedule)
    _run(trainer, trigger, expected[:resume], finished[:resume])
    fresh = triggers.ManualScheduleTrigger(*schedule)
    load(save(trigger), fresh)
    assert fresh.finished == trigger.finished
    _run(trainer, fresh, expected[resume:], finished[resume:])


@case_table
def test_sparse_calls_with_resume(iter_per_epoch, schedule, resume, expected, finished):
    rng = random.Random(0)
    for _ in range(10):
        mask = [rng.randrange(2) == 1 for _ in expected]
        trainer = _trainer(iter_per_epoch)
        trigger = triggers.ManualScheduleTrigger(*schedule)
        pending = _run(
            trainer, trigger, expected[:resume], finished[:resume], mask[:resume]
        )
        fresh = triggers.ManualScheduleTrigger(*schedule)
        load(save(trigger), fresh)
        _run(
            trainer,
            fresh,
            expected[resume:],
            finished[resume:],
            mask[resume:],
            pending,
        )


@case_table
def test_old_snapshot_without_state_warns_and_recovers(
    iter_per_epoch, schedule, resume, expected, finished
):
    trainer = _trainer(iter_per_epoch)
    trigger = triggers.ManualScheduleTrigger(*schedule)
    _run(trainer, trigger, expected[:resume], finished[:resume])

    fresh = triggers.ManualScheduleTrigger(*schedule)
    with pytest.warns(UserWarning, match="the snapshot has no") as record:
        fresh.serialize(DictDeserializer({}))
    assert len(record) == 3
    assert "'finished'" in str(record[2].message)
    assert fresh.finished is False  # so the extension is initialized
    _run(trainer, fresh, expected[resume:], finished[resume:])


def test_extension_on_schedule_in_a_trainer_and_not_initialized_when_finished():
    calls, inits = [], []

    def record(trainer):
        calls.append(trainer.updater.iteration)

    record.initialize = lambda trainer: inits.append(trainer.updater.iteration)
    trainer = get_trainer_with_mock_updater((8, "iteration"), iter_per_epoch=4)
    schedule = triggers.ManualScheduleTrigger([0.5, 1.25], "epoch")
    trainer.extend(record, trigger=schedule)
    trainer.run()
    assert calls == [2, 5]
    assert inits == [0]
    assert schedule.finished is True


BAD_ARGS = [
    (
        (1, "epochs"),
        ValueError,
        "unit must be 'iteration' or 'epoch'. Received: unit='epochs'",
    ),
    (([], "epoch"), ValueError, "points must be a number or a non-empty list"),
    ((-1, "iteration"), ValueError, "points must be non-negative"),
    (("3", "iteration"), TypeError, "points must be a number or a list of numbers"),
    (([1, None], "epoch"), TypeError, "points=[1, None]"),
    ((None, "epoch"), TypeError, "points=None"),
]


@pytest.mark.parametrize(
    ("args", "error", "match"),
    BAD_ARGS,
    ids=["plural_unit", "empty", "negative", "str", "none_in_list", "none"],
)
def test_bad_arguments_raise_naming_the_argument(args, error, match):
    with pytest.raises(error, match=re.escape(match)):
        triggers.ManualScheduleTrigger(*args)
