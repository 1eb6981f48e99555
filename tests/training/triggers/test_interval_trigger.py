"""IntervalTrigger: Chainer's firing tables, sparse calls, resume, errors."""

from __future__ import annotations

import random
import re

import pytest
from _trigger_testing import DictDeserializer, load, save

from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import triggers

# (iter_per_epoch, interval, resume, expected firing after updates 1, 2, ...)
CASES = [
    (5, (2, "iteration"), 4, [False, True, False, True, False, True, False]),
    (1, (3, "epoch"), 4, [False, False, True, False, False, True, False]),
    (2, (1.5, "epoch"), 4, [False, False, True, False, False, True, False]),
    (2.5, (1, "epoch"), 3, [False, False, True, False, True, False, False]),
    (0.5, (1, "epoch"), 4, [True] * 7),
    (4, (0.5, "epoch"), 3, [False, True, False, True, False, True, False]),
    (5, (0.5, "epoch"), 4, [False, False, True, False, True, False, False, True]),
    (3, (1, "iteration"), 2, [True] * 5),
]
IDS = [
    "iteration",
    "epoch",
    "fractional_epoch",
    "unaligned_epoch",
    "tiny_epoch",
    "half_epoch_even",
    "half_epoch_odd",
    "every_iteration",
]
case_table = pytest.mark.parametrize(
    ("iter_per_epoch", "interval", "resume", "expected"), CASES, ids=IDS
)


def _trainer(iter_per_epoch):
    return get_trainer_with_mock_updater(
        stop_trigger=None, iter_per_epoch=iter_per_epoch
    )


def _run(trainer, trigger, expected, call_mask=None, pending=False):
    """Updates once per entry and checks firing; skipped calls accumulate.

    Returns whether a firing is still pending (crossed but not yet called).
    """
    for i, want in enumerate(expected):
        trainer.updater.update()
        pending = pending or want
        if call_mask is None or call_mask[i]:
            assert trigger(trainer) == pending, f"after update {i + 1}"
            pending = False
    return pending


@case_table
def test_fires_on_table_and_never_before_the_first_update(
    iter_per_epoch, interval, resume, expected
):
    trainer = _trainer(iter_per_epoch)
    trigger = triggers.IntervalTrigger(*interval)
    assert trigger(trainer) is False  # iteration 0, as before training
    _run(trainer, trigger, expected)


@case_table
def test_resume_midway_continues_the_same_sequence(
    iter_per_epoch, interval, resume, expected
):
    trainer = _trainer(iter_per_epoch)
    trigger = triggers.IntervalTrigger(*interval)
    _run(trainer, trigger, expected[:resume])
    state = save(trigger)

    fresh = triggers.IntervalTrigger(*interval)
    load(state, fresh)
    _run(trainer, fresh, expected[resume:])


@case_table
def test_sparse_calls_with_resume_fire_once_per_missed_point(
    iter_per_epoch, interval, resume, expected
):
    rng = random.Random(0)
    for _ in range(10):
        mask = [rng.randrange(2) == 1 for _ in expected]
        trainer = _trainer(iter_per_epoch)
        trigger = triggers.IntervalTrigger(*interval)
        pending = _run(trainer, trigger, expected[:resume], mask[:resume])
        fresh = triggers.IntervalTrigger(*interval)
        load(save(trigger), fresh)
        # A point crossed after the last call before the save fires after it.
        _run(trainer, fresh, expected[resume:], mask[resume:], pending)


@case_table
def test_old_snapshot_without_state_warns_and_guesses(
    iter_per_epoch, interval, resume, expected
):
    trainer = _trainer(iter_per_epoch)
    trigger = triggers.IntervalTrigger(*interval)
    _run(trainer, trigger, expected[:resume])

    fresh = triggers.IntervalTrigger(*interval)
    with pytest.warns(UserWarning, match="the snapshot has no") as record:
        fresh.serialize(DictDeserializer({}))
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert "'previous_iteration'" in messages[0]
    assert "'previous_epoch_detail'" in messages[1]
    assert record[0].filename == __file__  # stacklevel points at the caller
    assert fresh._previous_iteration == -1
    _run(trainer, fresh, expected[resume:])


def test_serialized_state_is_the_previous_call_position():
    trainer = _trainer(4)
    trigger = triggers.IntervalTrigger(1, "epoch")
    for _ in range(3):
        trainer.updater.update()
    trigger(trainer)
    assert save(trigger) == {"previous_iteration": 3, "previous_epoch_detail": 0.75}


@pytest.mark.parametrize(
    ("interval", "length"),
    [((3, "iteration"), (3, "iteration")), ((0.5, "epoch"), (0.5, "epoch"))],
    ids=["iteration", "epoch"],
)
def test_get_training_length_and_str(interval, length):
    trigger = triggers.IntervalTrigger(*interval)
    assert trigger.get_training_length() == length
    assert str(trigger) == f"IntervalTrigger({interval[0]}, '{interval[1]}')"


@pytest.mark.parametrize(
    ("stop", "ipe", "iterations"),
    [((7, "iteration"), 3, 7), ((2, "epoch"), 3, 6), ((1.5, "epoch"), 2.5, 4)],
    ids=["iteration", "epoch", "fractional_epoch"],
)
def test_as_stop_trigger_of_a_trainer(stop, ipe, iterations):
    trainer = get_trainer_with_mock_updater(stop_trigger=stop, iter_per_epoch=ipe)
    trainer.run()
    assert trainer.updater.iteration == iterations


@pytest.mark.parametrize(
    ("trigger", "ipe", "expected"),
    [
        ((2, "iteration"), 10, [0, 2, 4, 6]),
        ((0.5, "epoch"), 4, [0, 2, 4, 6]),
        ((1, "epoch"), 2.5, [0, 3, 5]),
    ],
    ids=["iteration", "half_epoch", "unaligned_epoch"],
)
def test_extension_with_call_before_training(trigger, ipe, expected):
    calls = []
    trainer = get_trainer_with_mock_updater((6, "iteration"), iter_per_epoch=ipe)
    trainer.extend(
        lambda t: calls.append(t.updater.iteration),
        name="record",
        trigger=triggers.IntervalTrigger(*trigger),
        call_before_training=True,
    )
    trainer.run()
    assert calls == expected


BAD_ARGS = [
    (
        (1, "epochs"),
        ValueError,
        "unit must be 'iteration' or 'epoch'. Received: unit='epochs'",
    ),
    ((1, None), ValueError, "unit=None"),
    ((0, "iteration"), ValueError, "period"),
    ((-0.5, "epoch"), ValueError, "period"),
    ((float("nan"), "epoch"), ValueError, "period"),
    ((float("inf"), "epoch"), ValueError, "period"),
    (("1", "epoch"), TypeError, "period"),
    ((None, "iteration"), TypeError, "period"),
    ((True, "iteration"), TypeError, "period"),
]


@pytest.mark.parametrize(
    ("args", "error", "match"),
    BAD_ARGS,
    ids=[
        "plural_unit",
        "none_unit",
        "zero",
        "negative",
        "nan",
        "inf",
        "str",
        "none",
        "bool",
    ],
)
def test_bad_arguments_raise_naming_the_argument(args, error, match):
    with pytest.raises(error, match=re.escape(match)):
        triggers.IntervalTrigger(*args)


def test_an_updater_without_epoch_detail_counts_iterations_only():
    class Counting:
        iteration = 0

    class Holder:
        updater = Counting()

    holder = Holder()
    trigger = triggers.IntervalTrigger(2, "iteration")
    fired = []
    for _ in range(4):
        holder.updater.iteration += 1
        fired.append(trigger(holder))
    assert fired == [False, True, False, True]
    with pytest.raises(AttributeError, match="epoch_detail"):
        triggers.IntervalTrigger(1, "epoch")(holder)
