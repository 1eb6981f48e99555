"""MicroAverage: sum(numerator) / sum(denominator) per trigger, state, input."""

from __future__ import annotations

import os

import keras
import pytest

from ktrainer.serializers import load_npz, save_npz
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import PRIORITY_EDITOR, PRIORITY_READER, PRIORITY_WRITER
from ktrainer.training.extensions.micro_average import MicroAverage

CORRECT = [3, 5, 0, 7, 2, 4, 6, 1, 8]
TOTAL = [8, 8, 4, 8, 8, 5, 8, 8, 16]


def _trainer(stop, extension, *, as_tensor=True, skip=()):
    """A counting trainer that reports CORRECT/TOTAL of each iteration."""
    trainer = get_trainer_with_mock_updater((stop, "iteration"))

    def write(t):
        i = t.updater.iteration - 1
        if i in skip:
            return
        wrap = keras.ops.convert_to_tensor if as_tensor else int
        t.observation["main/correct"] = wrap(CORRECT[i])
        t.observation["main/total"] = wrap(TOTAL[i])

    trainer.extend(write, name="write", priority=PRIORITY_WRITER)
    trainer.extend(extension)
    results: list = []
    trainer.extend(
        lambda t: results.append(t.observation.get("main/accuracy")),
        name="read",
        priority=PRIORITY_READER,
    )
    return trainer, results


def _ratio(indices):
    return sum(CORRECT[i] for i in indices) / sum(TOTAL[i] for i in indices)


@pytest.mark.parametrize("as_tensor", [True, False], ids=["tensors", "ints"])
def test_result_is_the_ratio_of_the_sums(as_tensor):
    ext = MicroAverage("main/correct", "main/total", "main/accuracy", (3, "iteration"))
    trainer, results = _trainer(9, ext, as_tensor=as_tensor)
    trainer.run()
    expected = [None, None, _ratio([0, 1, 2]), None, None, _ratio([3, 4, 5])]
    expected += [None, None, _ratio([6, 7, 8])]
    assert results == pytest.approx(expected)
    assert all(isinstance(r, float) for r in results if r is not None)


def test_sums_stay_on_the_device_between_reports():
    ext = MicroAverage("main/correct", "main/total", "main/accuracy", (5, "iteration"))
    trainer, _ = _trainer(2, ext)
    trainer.run()
    assert keras.ops.is_tensor(ext._numerator)
    assert keras.ops.is_tensor(ext._denominator)


def test_iterations_missing_a_key_are_skipped():
    ext = MicroAverage("main/correct", "main/total", "main/accuracy", (3, "iteration"))
    trainer, results = _trainer(3, ext, skip={1})
    trainer.run()
    assert results == [None, None, pytest.approx(_ratio([0, 2]))]


def test_default_trigger_reports_once_per_epoch():
    # The mock trainer has 10 iterations per epoch.
    trainer = get_trainer_with_mock_updater((20, "iteration"))
    trainer.extend(
        lambda t: t.observation.update(n=1, d=2), name="w", priority=PRIORITY_WRITER
    )
    trainer.extend(MicroAverage("n", "d", "r"))
    results: list = []
    trainer.extend(lambda t: results.append(t.observation.get("r")), name="read")
    trainer.run()
    assert [i for i, r in enumerate(results) if r is not None] == [9, 19]
    assert results[9] == results[19] == 0.5


def test_resume_mid_way_keeps_the_running_sums(tmp_out):
    path = os.path.join(tmp_out, "snapshot.npz")
    first_ext = MicroAverage(
        "main/correct", "main/total", "main/accuracy", (3, "iteration")
    )
    first, _ = _trainer(4, first_ext)
    first.run()
    save_npz(path, first)

    ext = MicroAverage("main/correct", "main/total", "main/accuracy", (3, "iteration"))
    second, results = _trainer(9, ext)
    load_npz(path, second)
    second.run()
    # Iterations 5..9 run after the resume; iteration 4 was summed before
    # the snapshot and must count in the report of iteration 6.
    assert results == pytest.approx(
        [None, _ratio([3, 4, 5]), None, None, _ratio([6, 7, 8])]
    )


def test_defaults():
    ext = MicroAverage("a", "b", "c")
    assert ext.trigger == (1, "iteration")
    assert ext.priority == PRIORITY_EDITOR
    assert ext.model_state == "none"


BAD_ARGS = [
    (
        dict(numerator_key=1, denominator_key="d", result_key="r"),
        TypeError,
        "numerator_key",
    ),
    (
        dict(numerator_key="n", denominator_key=None, result_key="r"),
        TypeError,
        "denominator_key",
    ),
    (
        dict(numerator_key="n", denominator_key="d", result_key=2),
        TypeError,
        "result_key",
    ),
    (
        dict(
            numerator_key="n",
            denominator_key="d",
            result_key="r",
            trigger=(1, "epochs"),
        ),
        ValueError,
        "unit",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    BAD_ARGS,
    ids=["numerator", "denominator", "result", "trigger"],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        MicroAverage(**kwargs)
