from __future__ import annotations

import os
import re
import sys

import keras
import matplotlib.axes
import matplotlib.figure
import matplotlib.image
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer.iterators import SerialIterator
from ktrainer.reporter import DictSummary
from ktrainer.serializers import load_hdf5, save_hdf5
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import PRIORITY_WRITER, StandardUpdater, Trainer, make_extension
from ktrainer.training.extensions.plot_report import PlotReport

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LOSSES = [float(v) for v in np.linspace(2.0, 0.5, 12)]


def assert_png(path: str) -> None:
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    assert image.shape[0] > 0
    assert image.shape[1] > 0


def report_losses(values=LOSSES, key="loss"):
    """An extension that reports `values[iteration - 1]` as a device tensor."""

    @make_extension(priority=PRIORITY_WRITER)
    def reporter_ext(trainer):
        value = keras.ops.convert_to_tensor(values[trainer.updater.iteration - 1])
        trainer.reporter.report({key: value})

    return reporter_ext


def mock_trainer(out, stop=10, iter_per_epoch=5):
    trainer = get_trainer_with_mock_updater((stop, "iteration"), iter_per_epoch)
    trainer.out = out
    trainer.extend(report_losses())
    return trainer


X_KEY_CASES = [
    ("iteration", [5, 10]),
    ("epoch", [1, 2]),
]


@pytest.mark.parametrize(("x_key", "xs"), X_KEY_CASES, ids=["iteration", "epoch"])
def test_plots_interval_means_on_trigger(tmp_out, x_key, xs):
    trainer = mock_trainer(tmp_out)
    plot = PlotReport("loss", x_key, trigger=(5, "iteration"))
    trainer.extend(plot)
    trainer.run()

    expected = [np.mean(LOSSES[0:5]), np.mean(LOSSES[5:10])]
    assert [x for x, _ in plot.data["loss"]] == xs
    np.testing.assert_allclose([y for _, y in plot.data["loss"]], expected, rtol=1e-6)
    assert_png(os.path.join(tmp_out, "plot.png"))
    assert os.listdir(tmp_out) == ["plot.png"]  # no temporary file left behind


def test_writes_only_when_its_trigger_fires(tmp_out):
    trainer = mock_trainer(tmp_out, stop=8)
    trainer.extend(PlotReport(["loss"], trigger=(4, "iteration"), filename="loss.png"))
    written = []

    @make_extension(priority=0)
    def take_file(trainer):
        path = os.path.join(trainer.out, "loss.png")
        written.append(os.path.exists(path))
        if written[-1]:
            assert_png(path)
            os.remove(path)

    trainer.extend(take_file)
    trainer.run()
    assert written == [False, False, False, True, False, False, False, True]


def test_writes_nothing_while_no_key_was_observed(tmp_out):
    trainer = mock_trainer(tmp_out, stop=4)
    plot = PlotReport(["validation/main/loss"], trigger=(2, "iteration"))
    trainer.extend(plot)
    with pytest.warns(UserWarning, match="validation/main/loss"):
        trainer.run()
    assert plot.data == {"validation/main/loss": []}
    assert os.listdir(tmp_out) == []


def test_postprocess_gets_figure_axes_and_summary(tmp_out):
    calls = []

    def postprocess(figure, axes, summary):
        calls.append((figure, axes, summary.compute_mean()))
        axes.set_title("custom")

    trainer = mock_trainer(tmp_out, stop=4)
    trainer.extend(
        PlotReport("loss", trigger=(4, "iteration"), postprocess=postprocess)
    )
    trainer.run()

    ((figure, axes, means),) = calls
    assert isinstance(figure, matplotlib.figure.Figure)
    assert isinstance(axes, matplotlib.axes.Axes)
    assert axes.get_title() == "custom"
    assert means["loss"] == pytest.approx(np.mean(LOSSES[:4]))
    assert_png(os.path.join(tmp_out, "plot.png"))


def test_real_trainer_plots_main_loss_per_epoch(tmp_out):
    updater = StandardUpdater(SerialIterator(make_dataset(), 16), make_classifier())
    trainer = Trainer(updater, (2, "epoch"), out=tmp_out)
    plot = PlotReport(["main/loss", "main/accuracy"], "epoch", filename="curves.png")
    trainer.extend(plot)
    losses = []

    @make_extension(priority=0)
    def record(trainer):
        losses.append(
            float(keras.ops.convert_to_numpy(trainer.observation["main/loss"]))
        )

    trainer.extend(record)
    trainer.run()

    assert [x for x, _ in plot.data["main/loss"]] == [1, 2]
    np.testing.assert_allclose(
        [y for _, y in plot.data["main/loss"]],
        [np.mean(losses[:4]), np.mean(losses[4:])],
        rtol=1e-5,
    )
    assert len(plot.data["main/accuracy"]) == 2
    assert_png(os.path.join(tmp_out, "curves.png"))


def test_resume_continues_the_same_series(tmp_out, tmp_path):
    def build(stop):
        trainer = mock_trainer(tmp_out, stop=stop, iter_per_epoch=10)
        trainer.extend(PlotReport("loss", "iteration", trigger=(4, "iteration")))
        return trainer

    uninterrupted = build(12)
    uninterrupted.run()

    first = build(6)  # stops in the middle of the second interval
    first.run()
    path = str(tmp_path / "snapshot.h5")
    save_hdf5(path, first)
    resumed = build(12)
    load_hdf5(path, resumed)
    resumed.run()

    expected = uninterrupted.get_extension("PlotReport").data["loss"]
    got = resumed.get_extension("PlotReport").data["loss"]
    assert [x for x, _ in got] == [4, 8, 12]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert_png(os.path.join(tmp_out, "plot.png"))


def test_serialize_round_trip_of_the_extension_alone(tmp_path):
    plot = PlotReport(["a", "b"])
    plot._data = {"a": [(1, 0.5), (2, 0.25)], "b": []}
    plot._summary.add({"a": 3.0})
    path = str(tmp_path / "plot.h5")
    save_hdf5(path, plot)

    fresh = PlotReport(["a", "b"])
    load_hdf5(path, fresh)
    assert fresh.data == {"a": [(1, 0.5), (2, 0.25)], "b": []}
    assert fresh._summary.compute_mean() == {"a": 3.0}


def test_missing_matplotlib_raises_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert PlotReport.available() is False
    message = "PlotReport needs matplotlib: pip install matplotlib, or the plot extra"
    with pytest.raises(ImportError, match=re.escape(message)):
        PlotReport("main/loss")


def test_available_with_matplotlib():
    assert PlotReport.available() is True


def test_file_name_is_an_alias_of_filename(tmp_out):
    plot = PlotReport("loss", trigger=(2, "iteration"), file_name="old.png")
    trainer = mock_trainer(tmp_out, stop=2)
    trainer.extend(plot)
    trainer.run()
    assert_png(os.path.join(tmp_out, "old.png"))


def test_extension_defaults():
    plot = PlotReport("main/loss")
    assert plot.needs_model_state is False
    assert plot.trigger == (1, "iteration")
    assert plot.default_name == "PlotReport"
    assert isinstance(plot._summary, DictSummary)


BAD_ARGUMENTS = [
    ("y_keys_none", {"y_keys": None}, TypeError, "y_keys"),
    ("y_keys_not_str", {"y_keys": ["loss", 3]}, TypeError, "y_keys"),
    ("x_key_not_str", {"y_keys": "loss", "x_key": 1}, TypeError, "x_key"),
    ("postprocess", {"y_keys": "loss", "postprocess": 3}, TypeError, "postprocess"),
    ("filename_empty", {"y_keys": "loss", "filename": ""}, ValueError, "filename"),
    ("filename_type", {"y_keys": "loss", "filename": 3}, TypeError, "filename"),
    (
        "both_names",
        {"y_keys": "loss", "filename": "a.png", "file_name": "b.png"},
        TypeError,
        "file_name",
    ),
    ("unknown_kwarg", {"y_keys": "loss", "colour": "red"}, TypeError, "colour"),
    ("bad_trigger", {"y_keys": "loss", "trigger": (1, "epochs")}, ValueError, "unit"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [case[1:] for case in BAD_ARGUMENTS],
    ids=[case[0] for case in BAD_ARGUMENTS],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PlotReport(**kwargs)


@pytest.mark.parametrize("umask", [0o022, 0o007], ids=["022", "007"])
def test_image_gets_the_umask_permissions_like_the_log(tmp_out, umask):
    from ktrainer.training.extensions.log_report import LogReport

    previous = os.umask(umask)
    try:
        trainer = mock_trainer(tmp_out, stop=5)
        trainer.extend(LogReport(trigger=(5, "iteration")))
        trainer.extend(PlotReport("loss", trigger=(5, "iteration")))
        trainer.run()
    finally:
        os.umask(previous)
    mode = os.stat(os.path.join(tmp_out, "plot.png")).st_mode & 0o777
    assert mode == 0o666 & ~umask
    assert mode == os.stat(os.path.join(tmp_out, "log")).st_mode & 0o777


def test_warns_once_at_the_first_point_naming_missing_and_reported_keys(tmp_out):
    trainer = mock_trainer(tmp_out, stop=10)
    trainer.extend(PlotReport(["loss", "los"], trigger=(5, "iteration")))
    trainer.extend(PlotReport(["loss"], "main/step", trigger=(5, "iteration")))
    with pytest.warns(UserWarning, match="were not reported") as record:
        trainer.run()
    assert sorted(str(w.message) for w in record) == [
        "PlotReport keys ['los'] were not reported (misspelt, or reported by no "
        "extension?); they stay empty until they are. Reported keys: ['loss']",
        "PlotReport keys ['main/step'] were not reported (misspelt, or reported "
        "by no extension?); they stay empty until they are. Reported keys: "
        "['loss']",
    ]


def test_no_warning_for_a_key_reported_before_the_first_point(tmp_out, recwarn):
    trainer = mock_trainer(tmp_out, stop=4)

    @make_extension(priority=PRIORITY_WRITER)
    def sometimes(trainer):
        if trainer.updater.iteration == 1:
            trainer.reporter.report({"rare": 1.0})

    trainer.extend(sometimes)
    trainer.extend(PlotReport(["loss", "rare"], trigger=(4, "iteration")))
    trainer.run()
    assert [str(w.message) for w in recwarn] == []
