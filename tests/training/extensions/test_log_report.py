"""LogReport: the means it logs, the file it writes, its triggers and resume."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

import ktrainer
from ktrainer import training
from ktrainer.iterators import SerialIterator
from ktrainer.serializers import (
    DictionarySerializer,
    NpzDeserializer,
    load_hdf5,
    save_hdf5,
)
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training.extensions import log_report as log_report_module
from ktrainer.training.extensions.log_report import LogReport
from ktrainer.training.updaters import StandardUpdater


class _Probe(training.Extension):
    """Reports known values every iteration (as a writer) and records them."""

    priority = training.PRIORITY_WRITER

    def __init__(self):
        self.records: dict[int, dict[str, float]] = {}

    def __call__(self, trainer):
        it = trainer.updater.iteration
        values = {"main/a": 0.5 * it * it, "b": (it % 3) - 1.0, "c": it / 7}
        self.records[it] = values
        ktrainer.report(
            {
                # A backend tensor, a numpy scalar and a Python float.
                "main/a": keras.ops.convert_to_tensor(values["main/a"]),
                "b": np.float32(values["b"]),
                "c": values["c"],
            }
        )


def _expected_means(records, iterations, keys=("main/a", "b", "c")):
    return {k: np.mean([records[i][k] for i in iterations]) for k in keys}


def _mock_trainer(tmp_out, stop=(10, "iteration"), iter_per_epoch=4):
    trainer = get_trainer_with_mock_updater(stop, iter_per_epoch=iter_per_epoch)
    trainer.out = tmp_out
    return trainer


# (id, LogReport trigger, stop, iter_per_epoch, windows of iterations logged)
TRIGGERS = [
    ("every_epoch", (1, "epoch"), 10, 4, [range(1, 5), range(5, 9)]),
    (
        "every_2_iterations",
        (2, "iteration"),
        6,
        10,
        [range(1, 3), range(3, 5), range(5, 7)],
    ),
    ("every_3_iterations", (3, "iteration"), 8, 10, [range(1, 4), range(4, 7)]),
    ("every_half_epoch", (0.5, "epoch"), 4, 4, [range(1, 3), range(3, 5)]),
]


@pytest.mark.parametrize(
    ("trigger", "stop", "iter_per_epoch", "windows"),
    [case[1:] for case in TRIGGERS],
    ids=[case[0] for case in TRIGGERS],
)
def test_file_holds_the_means_of_each_window(
    tmp_out, trigger, stop, iter_per_epoch, windows
):
    trainer = _mock_trainer(tmp_out, (stop, "iteration"), iter_per_epoch)
    probe = _Probe()
    log_report = LogReport(trigger=trigger)
    trainer.extend(probe)
    trainer.extend(log_report)
    trainer.run()

    with open(os.path.join(tmp_out, "log")) as f:
        log = json.load(f)
    assert log == log_report.log
    assert len(log) == len(windows)
    for entry, window in zip(log, windows):
        assert list(entry) == ["main/a", "b", "c", "epoch", "iteration", "elapsed_time"]
        for key, mean in _expected_means(probe.records, window).items():
            assert isinstance(entry[key], float)
            np.testing.assert_allclose(entry[key], mean, rtol=1e-6)
        assert entry["iteration"] == window[-1]
        assert entry["epoch"] == window[-1] // iter_per_epoch
        assert isinstance(entry["elapsed_time"], float)
    assert [e["elapsed_time"] for e in log] == sorted(e["elapsed_time"] for e in log)


def test_file_layout_is_a_json_list_indented_by_4(tmp_out):
    def postprocess(stats):
        stats["elapsed_time"] = 0.0
        stats["extra"] = "added"

    trainer = _mock_trainer(tmp_out, (4, "iteration"))
    trainer.extend(
        lambda t: ktrainer.report({"v": float(t.updater.iteration)}),
        name="probe",
        priority=training.PRIORITY_WRITER,
    )
    trainer.extend(LogReport(trigger=(2, "iteration"), postprocess=postprocess))
    trainer.run()

    with open(os.path.join(tmp_out, "log")) as f:
        text = f.read()
    entry = (
        '    {{\n        "v": {v},\n        "epoch": {e},\n'
        '        "iteration": {i},\n        "elapsed_time": 0.0,\n'
        '        "extra": "added"\n    }}'
    )
    expected = (
        "[\n"
        + entry.format(v=1.5, e=0, i=2)
        + ",\n"
        + entry.format(v=3.5, e=1, i=4)
        + "\n]"
    )
    assert text == expected
    assert os.listdir(tmp_out) == ["log"]  # no temporary file left behind


def test_keys_selects_what_is_averaged(tmp_out):
    trainer = _mock_trainer(tmp_out, (4, "iteration"))
    probe = _Probe()
    trainer.extend(probe)
    trainer.extend(LogReport(keys=["b", "missing"], trigger=(2, "iteration")))
    trainer.run()
    log = trainer.get_extension("LogReport").log
    assert [list(e) for e in log] == [["b", "epoch", "iteration", "elapsed_time"]] * 2
    assert log[1]["b"] == pytest.approx(_expected_means(probe.records, [3, 4])["b"])


def test_filename_is_formatted_from_the_entry(tmp_out):
    trainer = _mock_trainer(tmp_out, (6, "iteration"))
    trainer.extend(_Probe())
    trainer.extend(LogReport(trigger=(2, "iteration"), filename="log_{iteration}"))
    trainer.run()
    assert sorted(os.listdir(tmp_out)) == ["log_2", "log_4", "log_6"]
    for n in (2, 4, 6):
        with open(os.path.join(tmp_out, f"log_{n}")) as f:
            assert [e["iteration"] for e in json.load(f)] == list(range(2, n + 1, 2))


def test_filename_none_writes_nothing(tmp_out):
    trainer = _mock_trainer(tmp_out, (4, "iteration"))
    trainer.extend(_Probe())
    log_report = LogReport(trigger=(2, "iteration"), filename=None)
    trainer.extend(log_report)
    trainer.run()
    assert os.listdir(tmp_out) == []
    assert [e["iteration"] for e in log_report.log] == [2, 4]


def test_log_name_is_a_deprecated_alias_of_filename(tmp_out):
    with pytest.warns(DeprecationWarning, match="log_name"):
        log_report = LogReport(trigger=(2, "iteration"), log_name="old_log")
    trainer = _mock_trainer(tmp_out, (2, "iteration"))
    trainer.extend(log_report)
    trainer.run()
    assert os.listdir(tmp_out) == ["old_log"]


def test_with_a_real_model_the_means_match_the_reported_values(tmp_out):
    model = make_classifier()
    updater = StandardUpdater(SerialIterator(make_dataset(32), 8, shuffle=False), model)
    trainer = training.Trainer(updater, (2, "epoch"), out=tmp_out)
    seen = []
    trainer.extend(
        lambda t: seen.append(
            {k: float(keras.ops.convert_to_numpy(v)) for k, v in t.observation.items()}
        ),
        name="probe",
        priority=training.PRIORITY_EDITOR,
    )
    trainer.extend(LogReport())
    trainer.run()

    with open(os.path.join(tmp_out, "log")) as f:
        log = json.load(f)
    assert [e["epoch"] for e in log] == [1, 2]
    for entry, window in zip(log, (seen[:4], seen[4:])):
        assert {"main/loss", "main/accuracy"} <= set(entry)
        for key in ("main/loss", "main/accuracy"):
            mean = np.mean([obs[key] for obs in window])
            np.testing.assert_allclose(entry[key], mean, rtol=1e-6)


def test_resume_continues_the_pending_window_and_keeps_the_log(tmp_out):
    def build(stop):
        trainer = _mock_trainer(tmp_out, (stop, "iteration"), iter_per_epoch=4)
        probe = _Probe()
        log_report = LogReport(trigger=(3, "iteration"))
        trainer.extend(probe)
        trainer.extend(log_report)
        return trainer, probe, log_report

    reference, probe, reference_report = build(10)
    reference.run()

    snapshot = os.path.join(os.path.dirname(tmp_out), "snapshot.h5")
    first, _, first_report = build(5)
    first.run()
    assert len(first_report.log) == 1  # iterations 4 and 5 are pending
    save_hdf5(snapshot, first)

    resumed, _, resumed_report = build(10)
    load_hdf5(snapshot, resumed)
    assert resumed_report.log == first_report.log
    resumed.run()

    def without_time(log):
        return [{k: v for k, v in e.items() if k != "elapsed_time"} for e in log]

    assert [e["iteration"] for e in resumed_report.log] == [3, 6, 9]
    expected = without_time(reference_report.log)
    actual = without_time(resumed_report.log)
    for want, got in zip(expected, actual):
        assert list(got) == list(want)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-6)
    np.testing.assert_allclose(
        actual[1]["main/a"], _expected_means(probe.records, [4, 5, 6])["main/a"]
    )
    with open(os.path.join(tmp_out, "log")) as f:
        assert json.load(f) == resumed_report.log


def test_serialize_round_trip_through_a_dictionary(tmp_out):
    trainer = _mock_trainer(tmp_out, (5, "iteration"))
    trainer.extend(_Probe())
    log_report = LogReport(trigger=(2, "iteration"))
    trainer.extend(log_report)
    trainer.run()
    state = {}
    log_report.serialize(DictionarySerializer(state))
    assert set(state) >= {"_log", "_trigger/previous_iteration"}
    assert json.loads(str(state["_log"])) == log_report.log

    fresh = LogReport(trigger=(2, "iteration"))
    fresh.serialize(NpzDeserializer(state))
    assert fresh.log == log_report.log
    assert fresh._summary.compute_mean() == pytest.approx(
        log_report._summary.compute_mean()
    )
    assert fresh._trigger._previous_iteration == 5


def test_class_defaults():
    assert LogReport.trigger == (1, "iteration")
    assert LogReport.priority == training.PRIORITY_READER
    assert LogReport.needs_model_state is False
    assert LogReport().default_name == "LogReport"


BAD_ARGS = [
    ("keys_str", {"keys": "main/loss"}, TypeError, "keys"),
    ("postprocess", {"postprocess": 3}, TypeError, "postprocess"),
    ("filename", {"filename": 3}, TypeError, "filename"),
    ("trigger_unit", {"trigger": (1, "epochs")}, ValueError, "unit"),
    ("unknown_kwarg", {"log_nam": "x"}, TypeError, "log_nam"),
    ("both_names", {"filename": "a", "log_name": "b"}, TypeError, "log_name"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [case[1:] for case in BAD_ARGS],
    ids=[case[0] for case in BAD_ARGS],
)
def test_bad_arguments_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        LogReport(**kwargs)


# -- before training, and the cost of a write ------------------------------------


def test_call_before_training_logs_iteration_0(tmp_out):
    trainer = _mock_trainer(tmp_out, (4, "iteration"))
    probe = _Probe()
    trainer.extend(probe, call_before_training=True)
    log_report = LogReport(trigger=(2, "iteration"))
    trainer.extend(log_report, call_before_training=True)

    trainer.run()

    log = log_report.log
    assert [(e["epoch"], e["iteration"]) for e in log] == [(0, 0), (0, 2), (1, 4)]
    assert log[0]["main/a"] == 0.0  # the observation made before training
    # The first window holds iterations 1 and 2 only.
    assert log[1]["c"] == pytest.approx(_expected_means(probe.records, [1, 2])["c"])
    with open(os.path.join(tmp_out, "log")) as f:
        assert [e["iteration"] for e in json.load(f)] == [0, 2, 4]


def test_without_call_before_training_nothing_is_logged_at_0(tmp_out):
    trainer = _mock_trainer(tmp_out, (4, "iteration"))
    log_report = LogReport(trigger=(2, "iteration"))
    trainer.extend(log_report)
    trainer.run()
    assert [e["iteration"] for e in log_report.log] == [2, 4]


def test_a_long_log_is_appended_in_place_in_chainers_layout(tmp_out, monkeypatch):
    full_writes = []
    original = log_report_module._util.write_text_atomically

    def counting(path, text):
        full_writes.append(path)
        original(path, text)

    monkeypatch.setattr(log_report_module._util, "write_text_atomically", counting)
    trainer = _mock_trainer(tmp_out, (40, "iteration"))
    trainer.extend(_Probe())
    log_report = LogReport(trigger=(1, "iteration"))
    trainer.extend(log_report)

    trainer.run()

    assert len(log_report.log) == 40
    assert len(full_writes) == 1  # the first entry; the 39 others were appended
    with open(os.path.join(tmp_out, "log")) as f:
        assert f.read() == json.dumps(log_report.log, indent=4)
    assert os.listdir(tmp_out) == ["log"]


def test_a_file_changed_by_someone_else_is_rewritten_in_full(tmp_path):
    path = str(tmp_path / "log")
    writer = log_report_module._AppendedJSONList()
    log = [{"a": 1.0}]
    writer.write(path, log)
    log.append({"a": float("nan"), "s": "x\ny"})
    writer.write(path, log)  # appended
    with open(path) as f:
        assert f.read() == json.dumps(log, indent=4)

    for change in ("append", "delete", "replace"):
        if change == "append":
            with open(path, "a") as f:
                f.write("garbage")
        elif change == "delete":
            os.remove(path)
        else:
            with open(path, "w") as f:
                f.write("[\n]")
        log.append({"a": float(len(log))})
        writer.write(path, log)
        with open(path) as f:
            assert f.read() == json.dumps(log, indent=4), change


def test_a_leftover_temporary_log_file_is_removed(tmp_out):
    for name in (".log.0123abcd.tmp", ".log.zz.tmp", ".other.0123abcd.tmp"):
        with open(os.path.join(tmp_out, name), "w") as f:
            f.write("[")
    trainer = _mock_trainer(tmp_out, (2, "iteration"))
    trainer.extend(LogReport(trigger=(2, "iteration")))
    trainer.run()
    assert sorted(os.listdir(tmp_out)) == [".log.zz.tmp", ".other.0123abcd.tmp", "log"]


def test_resume_rewrites_entries_written_after_the_snapshot(tmp_out):
    # A run killed after its snapshot wrote more entries; the resumed run's
    # file must hold its own log, not the dead run's extra entries.
    def build(stop):
        trainer = _mock_trainer(tmp_out, (stop, "iteration"))
        trainer.extend(_Probe())
        log_report = LogReport(trigger=(1, "iteration"))
        trainer.extend(log_report)
        return trainer, log_report

    first, _ = build(3)
    first.run()
    snapshot = os.path.join(os.path.dirname(tmp_out), "snapshot.h5")
    save_hdf5(snapshot, first)
    build(6)[0].run()  # the "dead" run's file: entries 1..6
    resumed, _ = build(5)
    load_hdf5(snapshot, resumed)
    resumed.run()
    with open(os.path.join(tmp_out, "log")) as f:
        assert [e["iteration"] for e in json.load(f)] == [1, 2, 3, 4, 5]
