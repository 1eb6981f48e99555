"""PrintReport: the exact table it prints, and what a resume prints."""

from __future__ import annotations

import io
import os

import pytest

import ktrainer
from ktrainer import training
from ktrainer.serializers import load_hdf5, save_hdf5
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training.extensions.log_report import LogReport
from ktrainer.training.extensions.print_report import PrintReport

ENTRIES = ["epoch", "iteration", "main/loss", "validation/main/accuracy", "lr"]

# 'lr' is never reported in these tests, to pin its blank column; the
# warning about it is tested on its own below.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:PrintReport entries \['lr'\] were not reported:UserWarning"
)


def _report_known_values(trainer):
    it = trainer.updater.iteration
    values = {"main/loss": 1.0 / it}
    if it % 2 == 0:
        values["validation/main/accuracy"] = 1234567.0
    ktrainer.report(values)


def _trainer(stop, **log_report_kwargs):
    trainer = get_trainer_with_mock_updater((stop, "iteration"), iter_per_epoch=2)
    trainer.extend(
        _report_known_values, name="probe", priority=training.PRIORITY_WRITER
    )
    trainer.extend(LogReport(trigger=(2, "iteration"), filename=None))
    return trainer


# Columns are max(len(entry), 10) wide, followed by two spaces; a missing
# entry ('lr') leaves its column blank.
HEADER = (
    "epoch     "
    + "  "
    + "iteration "
    + "  "
    + "main/loss "
    + "  "
    + "validation/main/accuracy"
    + "  "
    + "lr        "
    + "\n"
)
ROWS = [
    "1".ljust(12)
    + "2".ljust(12)
    + "0.75".ljust(12)
    + "1.23457e+06".ljust(26)
    + " " * 12
    + "\n",
    "2".ljust(12)
    + "4".ljust(12)
    + "0.291667".ljust(12)
    + "1.23457e+06".ljust(26)
    + " " * 12
    + "\n",
    "3".ljust(12)
    + "6".ljust(12)
    + "0.183333".ljust(12)
    + "1.23457e+06".ljust(26)
    + " " * 12
    + "\n",
]


def test_prints_header_once_then_one_row_per_log_entry():
    out = io.StringIO()
    trainer = _trainer(6)
    trainer.extend(PrintReport(ENTRIES, out=out))
    trainer.run()
    assert out.getvalue() == HEADER + "".join(ROWS)


def test_a_row_is_printed_in_the_iteration_its_entry_is_made():
    out = io.StringIO()
    printed = []
    trainer = _trainer(4)
    trainer.extend(PrintReport(ENTRIES, out=out))
    trainer.extend(lambda t: printed.append(out.getvalue().count("\n")), name="count")
    trainer.run()
    assert printed == [1, 2, 2, 3]  # header at iteration 1, rows at 2 and 4


def test_log_report_given_as_an_instance_is_driven_by_print_report():
    out = io.StringIO()
    trainer = get_trainer_with_mock_updater((4, "iteration"), iter_per_epoch=2)
    trainer.extend(
        _report_known_values, name="probe", priority=training.PRIORITY_WRITER
    )
    log_report = LogReport(trigger=(2, "iteration"), filename=None)
    trainer.extend(PrintReport(ENTRIES, log_report=log_report, out=out))
    trainer.run()
    assert [e["iteration"] for e in log_report.log] == [2, 4]
    assert out.getvalue() == HEADER + "".join(ROWS[:2])


def test_log_report_is_found_by_its_registered_name():
    out = io.StringIO()
    trainer = get_trainer_with_mock_updater((2, "iteration"), iter_per_epoch=2)
    trainer.extend(
        _report_known_values, name="probe", priority=training.PRIORITY_WRITER
    )
    trainer.extend(LogReport(trigger=(2, "iteration"), filename=None), name="my_log")
    trainer.extend(PrintReport(ENTRIES, log_report="my_log", out=out))
    trainer.run()
    assert out.getvalue() == HEADER + ROWS[0]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_each_row_first_clears_below_the_cursor():
    out = _Terminal()
    trainer = _trainer(4)
    trainer.extend(PrintReport(ENTRIES, out=out))
    trainer.run()
    assert out.getvalue() == HEADER + "".join("\033[J" + row for row in ROWS[:2])


def test_not_on_a_terminal_no_escape_codes_are_written():
    out = io.StringIO()
    trainer = _trainer(4)
    trainer.extend(PrintReport(ENTRIES, out=out))
    trainer.run()
    assert "\033" not in out.getvalue()


@pytest.mark.parametrize("own_log_report", [False, True], ids=["by_name", "instance"])
def test_resumed_run_prints_the_header_and_only_new_rows(tmp_path, own_log_report):
    def build(stop):
        trainer = get_trainer_with_mock_updater((stop, "iteration"), iter_per_epoch=2)
        trainer.extend(
            _report_known_values, name="probe", priority=training.PRIORITY_WRITER
        )
        log_report = LogReport(trigger=(2, "iteration"), filename=None)
        if not own_log_report:
            trainer.extend(log_report)
        out = io.StringIO()
        print_report = PrintReport(
            ENTRIES, log_report=log_report if own_log_report else "LogReport", out=out
        )
        trainer.extend(print_report)
        return trainer, log_report, print_report, out

    snapshot = os.path.join(str(tmp_path), "snapshot.h5")
    first, first_log, _, first_out = build(4)
    first.run()
    assert first_out.getvalue() == HEADER + "".join(ROWS[:2])
    save_hdf5(snapshot, first)

    resumed, resumed_log, _, resumed_out = build(6)
    load_hdf5(snapshot, resumed)
    assert resumed_log.log == first_log.log
    resumed.run()
    assert resumed_out.getvalue() == HEADER + ROWS[2]


def test_class_defaults():
    assert PrintReport.trigger == (1, "iteration")
    assert PrintReport.priority == training.PRIORITY_READER
    assert PrintReport.needs_model_state is False


def test_missing_log_report_names_the_registered_extensions():
    trainer = get_trainer_with_mock_updater((1, "iteration"))
    trainer.extend(PrintReport(["epoch"], out=io.StringIO()))
    with pytest.raises(ValueError, match="LogReport"):
        trainer.run(show_loop_exception_msg=False)


BAD_ARGS = [
    ("entries_str", {"entries": "epoch"}, TypeError, "entries"),
    ("entries_not_str", {"entries": ["epoch", 1]}, TypeError, "entries"),
    ("log_report", {"entries": ["epoch"], "log_report": 3}, TypeError, "log_report"),
    ("out", {"entries": ["epoch"], "out": 3}, TypeError, "out"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [case[1:] for case in BAD_ARGS],
    ids=[case[0] for case in BAD_ARGS],
)
def test_bad_arguments_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        PrintReport(**kwargs)


def test_warns_once_at_the_first_row_naming_missing_and_reported_keys():
    out = io.StringIO()
    trainer = _trainer(6)
    trainer.extend(PrintReport(["epoch", "main/los", "lr"], out=out))
    with pytest.warns(UserWarning, match="were not reported") as record:
        trainer.run()
    assert len(record) == 1
    message = str(record[0].message)
    assert "PrintReport entries ['main/los', 'lr'] were not reported" in message
    assert (
        "Reported keys: ['elapsed_time', 'epoch', 'iteration', 'main/loss', "
        "'validation/main/accuracy']" in message
    )


def test_no_warning_when_every_entry_is_in_the_first_row(recwarn):
    out = io.StringIO()
    trainer = _trainer(4)
    trainer.extend(PrintReport(["epoch", "main/loss"], out=out))
    trainer.run()
    assert [str(w.message) for w in recwarn] == []
