"""OnceTrigger: fires once, optionally once more after a resume."""

from __future__ import annotations

import random

import pytest
from _trigger_testing import DictDeserializer, load, save

from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import triggers

# (iter_per_epoch, call_on_resume, resume)
CASES = [
    (5, False, 4),
    (5, True, 4),
    (2.5, False, 3),
    (2.5, True, 3),
    (0.5, False, 4),
    (0.5, True, 4),
]
IDS = [
    "basic",
    "call_on_resume",
    "unaligned_epoch",
    "unaligned_epoch_call_on_resume",
    "tiny_epoch",
    "tiny_epoch_call_on_resume",
]
case_table = pytest.mark.parametrize(
    ("iter_per_epoch", "call_on_resume", "resume"), CASES, ids=IDS
)
EXPECTED = [True] + [False] * 6
FINISHED = [False] + [True] * 6


def _resumed_tables(call_on_resume, resume):
    expected, finished = list(EXPECTED), list(FINISHED)
    if call_on_resume:
        expected[resume], finished[resume] = True, False
    return expected, finished


def _trainer(iter_per_epoch):
    return get_trainer_with_mock_updater(
        stop_trigger=None, iter_per_epoch=iter_per_epoch
    )


def _run(trainer, trigger, expected, finished, mask=None, state=(False, True)):
    """Checks `finished` then the firing at each call; skipped calls accumulate.

    `state` carries (pending firing, pending finished) across a resume.
    """
    pending, pending_finished = state
    for i, (want, done) in enumerate(zip(expected, finished)):
        trainer.updater.update()
        pending, pending_finished = pending or want, pending_finished and done
        if mask is None or mask[i]:
            assert trigger.finished == pending_finished, f"call {i + 1}"
            assert trigger(trainer) == pending, f"call {i + 1}"
            pending, pending_finished = False, True
    return pending, pending_finished


@case_table
def test_fires_on_the_first_call_only(iter_per_epoch, call_on_resume, resume):
    trainer = _trainer(iter_per_epoch)
    trigger = triggers.OnceTrigger(call_on_resume)
    for want, done in zip(EXPECTED, FINISHED):
        assert trigger.finished == done
        assert trigger(trainer) == want
        trainer.updater.update()


@case_table
def test_resume_fires_again_only_with_call_on_resume(
    iter_per_epoch, call_on_resume, resume
):
    expected, finished = _resumed_tables(call_on_resume, resume)
    trainer = _trainer(iter_per_epoch)
    trigger = triggers.OnceTrigger(call_on_resume)
    _run(trainer, trigger, expected[:resume], finished[:resume])
    fresh = triggers.OnceTrigger(call_on_resume)
    load(save(trigger), fresh)
    _run(trainer, fresh, expected[resume:], finished[resume:])


@case_table
def test_sparse_calls_with_resume(iter_per_epoch, call_on_resume, resume):
    expected, finished = _resumed_tables(call_on_resume, resume)
    rng = random.Random(0)
    for _ in range(10):
        mask = [rng.randrange(2) == 1 for _ in expected]
        trainer = _trainer(iter_per_epoch)
        trigger = triggers.OnceTrigger(call_on_resume)
        state = _run(
            trainer, trigger, expected[:resume], finished[:resume], mask[:resume]
        )
        fresh = triggers.OnceTrigger(call_on_resume)
        load(save(trigger), fresh)
        if call_on_resume:
            state = (False, True)  # the resumed object fires on its own
        _run(trainer, fresh, expected[resume:], finished[resume:], mask[resume:], state)


@case_table
def test_old_snapshot_without_flag_warns_and_assumes_it_fired(
    iter_per_epoch, call_on_resume, resume
):
    expected, finished = _resumed_tables(call_on_resume, resume)
    trainer = _trainer(iter_per_epoch)
    trigger = triggers.OnceTrigger(call_on_resume)
    _run(trainer, trigger, expected[:resume], finished[:resume])
    fresh = triggers.OnceTrigger(call_on_resume)
    with pytest.warns(UserWarning, match="_flag_first"):
        fresh.serialize(DictDeserializer({}))
    _run(trainer, fresh, expected[resume:], finished[resume:])


def test_in_a_trainer_runs_the_extension_once_after_the_first_update():
    calls = []
    trainer = get_trainer_with_mock_updater((4, "iteration"))
    trainer.extend(
        lambda t: calls.append(t.updater.iteration),
        name="record",
        trigger=triggers.OnceTrigger(),
        call_before_training=True,
    )
    trainer.run()
    # The before-training call does not consult the trigger.
    assert calls == [0, 1]


def test_resumed_trainer_skips_initialize_once_finished():
    inits = []

    def record(trainer):
        pass

    record.initialize = lambda trainer: inits.append(trainer.updater.iteration)
    first = get_trainer_with_mock_updater((2, "iteration"))
    first.extend(record, trigger=triggers.OnceTrigger())
    first.run()
    second = get_trainer_with_mock_updater((4, "iteration"))
    second.extend(record, trigger=triggers.OnceTrigger())
    load(save(first), second)
    second.run()
    assert inits == [0]
