from __future__ import annotations

import os
import re
import sys

import keras
import matplotlib.image
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer.iterators import SerialIterator
from ktrainer.serializers import load_hdf5, save_hdf5
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import StandardUpdater, Trainer, make_extension
from ktrainer.training.extensions.variable_statistics_plot import (
    VariableStatisticsPlot,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIGMAS = (0, 0.13, 2.28, 15.87, 50, 84.13, 97.72, 99.87, 100)


def assert_png(path: str) -> None:
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    assert image.shape[0] > 0
    assert image.shape[1] > 0


def numpy_row(values: np.ndarray, sigmas=SIGMAS) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return np.concatenate([[x.mean(), x.std()], np.percentile(x, sigmas)])


def built_dense(name="dense") -> keras.layers.Layer:
    layer = keras.layers.Dense(3, name=name)
    layer.build((None, 4))
    return layer


def test_real_trainer_plots_statistics_of_the_weights(tmp_out):
    model = make_classifier()
    updater = StandardUpdater(SerialIterator(make_dataset(), 16), model)
    trainer = Trainer(updater, (2, "epoch"), out=tmp_out)
    plot = VariableStatisticsPlot(model)
    trainer.extend(plot)
    trainer.run()

    assert_png(os.path.join(tmp_out, "statistics.png"))
    assert os.listdir(tmp_out) == ["statistics.png"]
    idxs, data = plot._samples.get_data()
    np.testing.assert_array_equal(idxs, np.arange(1, 9))
    # The last row was computed from the final weights.
    weights = np.concatenate(
        [keras.ops.convert_to_numpy(v).ravel() for v in model.weights]
    )
    np.testing.assert_allclose(data[-1], numpy_row(weights), rtol=1e-5, atol=1e-6)


def test_writes_only_when_its_trigger_fires(tmp_out):
    trainer = get_trainer_with_mock_updater((6, "iteration"))
    trainer.out = tmp_out
    trainer.extend(VariableStatisticsPlot(built_dense(), trigger=(3, "iteration")))
    written = []

    @make_extension(priority=0)
    def take_file(trainer):
        path = os.path.join(trainer.out, "statistics.png")
        written.append(os.path.exists(path))
        if written[-1]:
            assert_png(path)
            os.remove(path)

    trainer.extend(take_file)
    trainer.run()
    assert written == [False, False, True, False, False, True]


def test_statistics_of_a_list_of_variables(tmp_out):
    a = keras.Variable(np.arange(6, dtype="float32"))
    b = keras.Variable(np.arange(6, 11, dtype="float32").reshape(5, 1))
    trainer = get_trainer_with_mock_updater((1, "iteration"))
    trainer.out = tmp_out
    plot = VariableStatisticsPlot([a, [b]], trigger=(1, "iteration"))
    trainer.extend(plot)
    trainer.run()

    _, data = plot._samples.get_data()
    np.testing.assert_allclose(data[0], numpy_row(np.arange(11)), rtol=1e-6)
    assert_png(os.path.join(tmp_out, "statistics.png"))


def test_sample_is_capped_at_max_sample_size(tmp_out):
    trainer = get_trainer_with_mock_updater((20, "iteration"))
    trainer.out = tmp_out
    plot = VariableStatisticsPlot(
        built_dense(), max_sample_size=5, trigger=(20, "iteration")
    )
    trainer.extend(plot)
    trainer.run()

    idxs, data = plot._samples.get_data()
    assert data.shape == (5, 2 + len(SIGMAS))
    assert len(set(idxs.tolist())) == 5
    assert list(idxs) == sorted(idxs)
    assert set(idxs.tolist()) <= set(range(1, 21))


PLOT_CASES = [
    ("mean_only", {"plot_std": False, "percentile_sigmas": ()}, 1),
    ("std_only", {"plot_mean": False, "percentile_sigmas": None}, 1),
    (
        "one_percentile",
        {"plot_mean": False, "plot_std": False, "percentile_sigmas": 50},
        1,
    ),
    ("even_percentiles", {"percentile_sigmas": (10, 50, 60, 90)}, 6),
    ("styled", {"figsize": (4, 3), "marker": "o", "grid": False}, 11),
]


@pytest.mark.parametrize(
    ("kwargs", "width"), [c[1:] for c in PLOT_CASES], ids=[c[0] for c in PLOT_CASES]
)
def test_plot_variants_write_png(tmp_out, kwargs, width):
    trainer = get_trainer_with_mock_updater((2, "iteration"))
    trainer.out = tmp_out
    plot = VariableStatisticsPlot(
        built_dense(), trigger=(2, "iteration"), filename="v.png", **kwargs
    )
    trainer.extend(plot)
    trainer.run()
    assert plot._samples.get_data()[1].shape == (2, width)
    assert_png(os.path.join(tmp_out, "v.png"))


def test_serialize_round_trip_keeps_the_sample(tmp_out, tmp_path):
    layer = built_dense()
    trainer = get_trainer_with_mock_updater((3, "iteration"))
    trainer.out = tmp_out
    plot = VariableStatisticsPlot(layer, trigger=(10, "iteration"))
    trainer.extend(plot)
    trainer.run()
    path = str(tmp_path / "vsp.h5")
    save_hdf5(path, plot)

    fresh = VariableStatisticsPlot(layer, trigger=(10, "iteration"))
    load_hdf5(path, fresh)
    idxs, data = fresh._samples.get_data()
    expected_idxs, expected_data = plot._samples.get_data()
    np.testing.assert_array_equal(idxs, expected_idxs)
    np.testing.assert_array_equal(data, expected_data)
    assert fresh._samples.counter == 3


def test_unbuilt_layer_is_read_when_called(tmp_out):
    layer = keras.layers.Dense(2)
    plot = VariableStatisticsPlot(layer, trigger=(1, "iteration"))
    layer.build((None, 3))
    trainer = get_trainer_with_mock_updater((1, "iteration"))
    trainer.out = tmp_out
    trainer.extend(plot)
    trainer.run()
    assert_png(os.path.join(tmp_out, "statistics.png"))


def test_missing_matplotlib_raises_naming_the_extra(monkeypatch):
    layer = built_dense()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert VariableStatisticsPlot.available() is False
    message = "VariableStatisticsPlot needs matplotlib: pip install matplotlib, or"
    with pytest.raises(ImportError, match=re.escape(message)):
        VariableStatisticsPlot(layer)


def test_file_name_is_an_alias_of_filename():
    plot = VariableStatisticsPlot(built_dense(), file_name="old.png")
    assert plot._filename == "old.png"


def test_extension_attributes():
    plot = VariableStatisticsPlot(built_dense())
    assert plot.needs_model_state is True
    assert plot.trigger == (1, "iteration")
    assert plot.default_name == "VariableStatisticsPlot"
    assert VariableStatisticsPlot.available() is True


BAD_ARGUMENTS = [
    ("report_grad", {"report_grad": True}, ValueError, "report_grad"),
    ("report_data", {"report_data": False}, ValueError, "report_data"),
    (
        "nothing_to_plot",
        {"plot_mean": False, "plot_std": False, "percentile_sigmas": ()},
        ValueError,
        "plot_mean",
    ),
    ("no_variables", {"targets": []}, ValueError, "targets"),
    ("target_type", {"targets": "dense"}, TypeError, "targets"),
    ("sample_size_zero", {"max_sample_size": 0}, ValueError, "max_sample_size"),
    ("sample_size_float", {"max_sample_size": 1.5}, TypeError, "max_sample_size"),
    ("percentile_range", {"percentile_sigmas": (50, 101)}, ValueError, "percentile"),
    ("percentile_type", {"percentile_sigmas": ("50",)}, TypeError, "percentile"),
    ("unknown_kwarg", {"colour": "red"}, TypeError, "colour"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [case[1:] for case in BAD_ARGUMENTS],
    ids=[case[0] for case in BAD_ARGUMENTS],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"targets": built_dense(), **kwargs}
    with pytest.raises(error, match=match):
        VariableStatisticsPlot(**kwargs)


def test_image_gets_the_umask_permissions(tmp_out):
    previous = os.umask(0o027)
    try:
        trainer = get_trainer_with_mock_updater((2, "iteration"))
        trainer.out = tmp_out
        trainer.extend(VariableStatisticsPlot(built_dense(), trigger=(2, "iteration")))
        trainer.run()
    finally:
        os.umask(previous)
    mode = os.stat(os.path.join(tmp_out, "statistics.png")).st_mode & 0o777
    assert mode == 0o640
