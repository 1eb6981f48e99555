from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer.iterators import SerialIterator
from ktrainer.serializers import load_hdf5, save_hdf5
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import PRIORITY_WRITER, StandardUpdater, Trainer, make_extension
from ktrainer.training.extensions.parameter_statistics import ParameterStatistics

PERCENTILES = (0.13, 2.28, 15.87, 50, 84.13, 97.72, 99.87)


def numpy_statistics(values: np.ndarray) -> dict[str, float]:
    """Chainer's default statistics, computed with numpy, by key suffix."""
    x = np.asarray(values, dtype=np.float64).ravel()
    stats = {
        "mean": x.mean(),
        "std": x.std(),
        "min": x.min(),
        "max": x.max(),
        "zeros": float(np.count_nonzero(x == 0)),
    }
    for i, p in enumerate(np.percentile(x, PERCENTILES)):
        stats[f"percentile/{i}"] = p
    return stats


def expected_report(model, prefix="") -> dict[str, float]:
    expected = {}
    for variable in model.weights:
        values = keras.ops.convert_to_numpy(variable)
        for name, value in numpy_statistics(values).items():
            expected[f"{prefix}{variable.path}/data/{name}"] = value
    return expected


def observation_recorder(records: list):
    @make_extension(priority=0)
    def record(trainer):
        records.append(
            {
                k: float(keras.ops.convert_to_numpy(v))
                for k, v in trainer.observation.items()
                if "/data/" in k
            }
        )

    return record


def real_trainer(out, model, epochs=1):
    updater = StandardUpdater(SerialIterator(make_dataset(), 16), model)
    return Trainer(updater, (epochs, "epoch"), out=out)


PREFIX_CASES = [(None, ""), ("params", "params/")]


@pytest.mark.parametrize(("prefix", "key_prefix"), PREFIX_CASES, ids=["none", "prefix"])
def test_reports_numpy_statistics_of_the_weights(tmp_out, prefix, key_prefix):
    model = make_classifier()
    trainer = real_trainer(tmp_out, model)
    trainer.extend(ParameterStatistics(model, prefix=prefix, trigger=(1, "iteration")))
    records = []
    trainer.extend(observation_recorder(records))
    trainer.run()

    # The last iteration's report describes the final weights.
    expected = expected_report(model, key_prefix)
    got = records[-1]
    assert sorted(got) == sorted(expected)
    assert "classifier/hidden/kernel/data/percentile/6" in {
        k[len(key_prefix) :] for k in got
    }
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_reports_interval_means_when_its_trigger_fires(tmp_out):
    model = make_classifier()
    trainer = real_trainer(tmp_out, model)
    trainer.extend(
        ParameterStatistics(model.get_layer("logits"), trigger=(2, "iteration"))
    )
    snapshots = []

    @make_extension(priority=PRIORITY_WRITER + 1)
    def record_weights(trainer):
        snapshots.append(expected_report(model))

    records = []
    trainer.extend(record_weights)
    trainer.extend(observation_recorder(records))
    trainer.run()  # 4 iterations

    assert [bool(r) for r in records] == [False, True, False, True]
    for i in (1, 3):
        for key, value in records[i].items():
            mean = (snapshots[i - 1][key] + snapshots[i][key]) / 2
            np.testing.assert_allclose(value, mean, rtol=1e-5, atol=1e-6, err_msg=key)
    assert all(k.startswith("classifier/logits/") for k in records[1])
    assert len(records[1]) == 2 * 12  # kernel and bias, 12 values each


def test_skip_nan_params_reports_nan_for_that_variable_only():
    model = make_classifier()
    bias = model.get_layer("hidden").bias
    bias.assign(np.full(bias.shape, np.nan, dtype="float32"))
    trainer = get_trainer_with_mock_updater((1, "iteration"))
    trainer.extend(
        ParameterStatistics(model, trigger=(1, "iteration"), skip_nan_params=True)
    )
    records = []
    trainer.extend(observation_recorder(records))
    trainer.run()

    (got,) = records
    nan_keys = [k for k in got if k.startswith("classifier/hidden/bias/")]
    assert len(nan_keys) == 12
    assert all(np.isnan(got[k]) for k in nan_keys)
    assert all(np.isfinite(v) for k, v in got.items() if k not in nan_keys)


def test_custom_and_registered_statistics():
    layer = keras.layers.Dense(2, name="dense")
    layer.build((None, 3))
    layer.kernel.assign(np.array([[1, -2], [3, 0], [0, 4]], dtype="float32"))

    def l2(x):
        return keras.ops.sqrt(keras.ops.sum(x * x))

    extension = ParameterStatistics(
        layer, statistics={"l2": l2}, trigger=(1, "iteration")
    )
    extension.register_statistics(
        "range", lambda x: keras.ops.stack([keras.ops.min(x), keras.ops.max(x)])
    )
    trainer = get_trainer_with_mock_updater((1, "iteration"))
    trainer.extend(extension)
    records = []
    trainer.extend(observation_recorder(records))
    trainer.run()

    kernel = layer.kernel.path
    assert records[0] == pytest.approx(
        {
            f"{kernel}/data/l2": np.sqrt(30.0),
            f"{kernel}/data/range/0": -2.0,
            f"{kernel}/data/range/1": 4.0,
            f"{layer.bias.path}/data/l2": 0.0,
            f"{layer.bias.path}/data/range/0": 0.0,
            f"{layer.bias.path}/data/range/1": 0.0,
        }
    )


NOTHING_CASES = [
    ("no_statistics", {"statistics": None}),
    ("no_params", {"report_params": False}),
]


@pytest.mark.parametrize(
    "kwargs", [c[1] for c in NOTHING_CASES], ids=[c[0] for c in NOTHING_CASES]
)
def test_reports_nothing_when_nothing_is_selected(kwargs):
    trainer = get_trainer_with_mock_updater((2, "iteration"))
    trainer.extend(
        ParameterStatistics(make_classifier(), trigger=(1, "iteration"), **kwargs)
    )
    records = []
    trainer.extend(observation_recorder(records))
    trainer.run()
    assert records == [{}, {}]


def test_resume_keeps_the_pending_interval(tmp_path):
    layer = keras.layers.Dense(1, use_bias=False, name="bumped")
    layer.build((None, 1))

    def build(stop):
        trainer = get_trainer_with_mock_updater((stop, "iteration"))

        @make_extension(priority=PRIORITY_WRITER + 1)
        def bump(trainer):  # the kernel holds the iteration number
            layer.kernel.assign([[float(trainer.updater.iteration)]])

        trainer.extend(bump)
        trainer.extend(
            ParameterStatistics(
                layer, statistics={"mean": keras.ops.mean}, trigger=(4, "iteration")
            )
        )
        records = []
        trainer.extend(observation_recorder(records))
        return trainer, records

    first, _ = build(2)
    first.run()
    path = str(tmp_path / "snapshot.h5")
    save_hdf5(path, first)
    resumed, records = build(4)
    load_hdf5(path, resumed)
    resumed.run()

    assert records == [{}, {f"{layer.kernel.path}/data/mean": 2.5}]


def test_extension_attributes():
    extension = ParameterStatistics(make_classifier())
    assert extension.priority == PRIORITY_WRITER
    assert extension.default_name == "parameter_statistics"
    assert extension.trigger == (1, "iteration")
    assert extension.model_state == "read"


BAD_ARGUMENTS = [
    ("report_grads", {"report_grads": True}, ValueError, "report_grads"),
    ("statistics_name", {"statistics": "all"}, ValueError, "statistics"),
    ("statistics_type", {"statistics": ["mean"]}, TypeError, "statistics"),
    ("statistic_function", {"statistics": {"mean": 1}}, TypeError, "mean"),
    ("prefix", {"prefix": 3}, TypeError, "prefix"),
    ("links", {"links": "classifier"}, TypeError, "links"),
    ("trigger", {"trigger": (0, "epoch")}, ValueError, "period"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [case[1:] for case in BAD_ARGUMENTS],
    ids=[case[0] for case in BAD_ARGUMENTS],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"links": make_classifier(), **kwargs}
    with pytest.raises(error, match=match):
        ParameterStatistics(**kwargs)
