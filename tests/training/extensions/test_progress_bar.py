"""ProgressBar: plain lines for files and pipes, a redrawn bar on terminals."""

from __future__ import annotations

import io
import re

import pytest

from ktrainer import training
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training.extensions.progress_bar import ProgressBar

_PLAIN = re.compile(
    r"(?P<iteration> {0,9}\d+) iter, (?P<epoch>\d+) epoch / (?P<length>\S+) "
    r"(?P<unit>iterations|epochs); total (?P<total> *\d+\.\d\d)%, "
    r"this epoch (?P<this> *\d+\.\d\d)%; (?P<speed>\S+) iters/sec; "
    r"estimated time to finish: (?P<eta>unknown|\d+:\d\d:\d\d(\.\d+)?)\.\n"
)


def _run(stop, iter_per_epoch=4, out=None, **kwargs):
    out = io.StringIO() if out is None else out
    trainer = get_trainer_with_mock_updater(stop, iter_per_epoch=iter_per_epoch)
    trainer.extend(ProgressBar(out=out, **kwargs))
    trainer.run()
    return out.getvalue()


# (id, stop trigger, ProgressBar kwargs, iterations printed, length, unit,
#  total %, this-epoch %) with 4 iterations per epoch.
PLAIN_CASES = [
    (
        "iterations",
        (10, "iteration"),
        {"update_interval": 2},
        [2, 4, 6, 8, 10],
        "10",
        "iterations",
        [20, 40, 60, 80, 100],
        [50, 0, 50, 0, 50],
    ),
    (
        "epochs",
        (3, "epoch"),
        {"update_interval": 3},
        [3, 6, 9, 12],
        "3",
        "epochs",
        [25, 50, 75, 100],
        [75, 50, 25, 0],
    ),
    (
        "explicit_length",
        (4, "iteration"),
        {"update_interval": 4, "training_length": (8, "iteration")},
        [4],
        "8",
        "iterations",
        [50],
        [0],
    ),
]


@pytest.mark.parametrize(
    ("stop", "kwargs", "iterations", "length", "unit", "total", "this_epoch"),
    [case[1:] for case in PLAIN_CASES],
    ids=[case[0] for case in PLAIN_CASES],
)
def test_not_a_terminal_one_plain_line_per_update(
    stop, kwargs, iterations, length, unit, total, this_epoch
):
    text = _run(stop, **kwargs)
    assert "\033" not in text
    assert "\r" not in text
    lines = text.splitlines(keepends=True)
    assert len(lines) == len(iterations)
    for i, line in enumerate(lines):
        match = _PLAIN.fullmatch(line)
        assert match, line
        assert len(match["iteration"]) == 10
        assert int(match["iteration"]) == iterations[i]
        assert int(match["epoch"]) == iterations[i] // 4
        assert (match["length"], match["unit"]) == (length, unit)
        assert float(match["total"]) == pytest.approx(total[i])
        assert float(match["this"]) == pytest.approx(this_epoch[i])
        float(match["speed"])  # a number (inf at the first update)
    assert _PLAIN.fullmatch(lines[0])["eta"] == "unknown"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_bar_is_redrawn_in_place():
    text = _run((8, "iteration"), out=_Terminal(), update_interval=4, bar_length=10)
    drawings = text.split("\033[4A")
    assert len(drawings) == 3  # two drawings, then the final erase
    assert drawings[-1] == "\033[J"
    first, second = (d.removeprefix("\033[J").splitlines() for d in drawings[:2])
    assert first[:3] == [
        "     total [#####.....] 50.00%",
        "this epoch [..........]  0.00%",
        "         4 iter, 1 epoch / 8 iterations",
    ]
    assert second[:3] == [
        "     total [##########] 100.00%",
        "this epoch [..........]  0.00%",
        "         8 iter, 2 epoch / 8 iterations",
    ]
    for drawing in (first, second):
        assert re.fullmatch(
            r" *\S+ iters/sec\. Estimated time to finish: .+\.", drawing[3]
        )


def test_nothing_is_written_between_updates():
    out = io.StringIO()
    trainer = get_trainer_with_mock_updater((5, "iteration"))
    sizes = []
    trainer.extend(ProgressBar(update_interval=3, out=out))
    trainer.extend(lambda t: sizes.append(len(out.getvalue())), name="size")
    trainer.run()
    assert sizes[0] == sizes[1] == 0
    assert sizes[2] > 0
    assert sizes[2] == sizes[3] == sizes[4]


def test_stop_trigger_without_a_length_needs_training_length():
    trainer = get_trainer_with_mock_updater(lambda t: t.updater.iteration >= 2)
    trainer.extend(ProgressBar(out=io.StringIO()))
    with pytest.raises(TypeError, match="training_length"):
        trainer.run(show_loop_exception_msg=False)


def test_class_defaults():
    assert ProgressBar.trigger == (1, "iteration")
    assert ProgressBar.priority == training.PRIORITY_READER
    assert ProgressBar.needs_model_state is False


BAD_ARGS = [
    ("length_not_pair", {"training_length": 10}, TypeError, "training_length"),
    ("length_unit", {"training_length": (10, "epochs")}, ValueError, "training_length"),
    ("length_zero", {"training_length": (0, "epoch")}, ValueError, "training_length"),
    ("interval_zero", {"update_interval": 0}, ValueError, "update_interval"),
    ("interval_float", {"update_interval": 1.5}, TypeError, "update_interval"),
    ("bar_length", {"bar_length": -1}, ValueError, "bar_length"),
    ("out", {"out": object()}, TypeError, "out"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [case[1:] for case in BAD_ARGS],
    ids=[case[0] for case in BAD_ARGS],
)
def test_bad_arguments_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        ProgressBar(**kwargs)
