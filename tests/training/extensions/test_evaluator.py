"""Evaluator: results equal `model.evaluate`, eval_func averaging, trainer use."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

import ktrainer
from ktrainer import training
from ktrainer.dataset import TupleDataset, as_iterator
from ktrainer.iterators import SerialIterator
from ktrainer.training.extensions.evaluator import Evaluator
from ktrainer.training.extensions.log_report import LogReport
from ktrainer.training.updaters import StandardUpdater


def _arrays(dataset):
    return np.stack([x for x, _ in dataset]), np.stack([y for _, y in dataset])


def _val_iterator(dataset, batch_size):
    return SerialIterator(dataset, batch_size, repeat=False, shuffle=False)


# (examples, batch size): the last batch is smaller in all but the first.
SIZES = [(48, 16), (50, 16), (5, 16)]


@pytest.mark.parametrize(("n", "batch_size"), SIZES, ids=lambda v: str(v))
def test_results_equal_model_evaluate(n, batch_size):
    model = make_classifier()
    dataset = make_dataset(n, seed=1)
    evaluator = Evaluator(_val_iterator(dataset, batch_size), model)
    evaluator.name = "validation"

    result = evaluator()

    x, y = _arrays(dataset)
    expected = model.evaluate(x, y, batch_size=batch_size, return_dict=True, verbose=0)
    assert set(result) == {"validation/main/loss", "validation/main/accuracy"}
    for key, value in expected.items():
        assert isinstance(result["validation/main/" + key], float)
        np.testing.assert_allclose(
            result["validation/main/" + key], value, rtol=1e-6, atol=1e-7
        )


def test_repeated_calls_give_identical_values():
    model = make_classifier()
    evaluator = Evaluator(_val_iterator(make_dataset(50), 16), model)
    first = evaluator()
    second = evaluator()
    assert first == second
    assert first  # not an empty dict


def test_without_a_trainer_keys_have_no_extension_prefix():
    # As in Chainer: the prefix is the name a trainer gives the extension.
    model = make_classifier()
    result = Evaluator(_val_iterator(make_dataset(16), 8), model)()
    assert set(result) == {"main/loss", "main/accuracy"}


def test_results_are_reported_to_the_current_reporter():
    model = make_classifier()
    evaluator = Evaluator(_val_iterator(make_dataset(16), 8), model)
    evaluator.name = "val"
    reporter = ktrainer.Reporter()
    observation = {}
    with reporter.scope(observation):
        result = evaluator()
    assert observation == result
    assert set(observation) == {"val/main/loss", "val/main/accuracy"}


def test_dict_target_evaluates_every_compiled_model_under_its_name():
    first = make_classifier()
    second = make_classifier(n_hidden=4)
    plain = keras.layers.Dense(2)  # not a compiled model: an observer only
    dataset = make_dataset(40, seed=2)
    evaluator = Evaluator(
        _val_iterator(dataset, 16), {"main": first, "second": second, "plain": plain}
    )
    evaluator.name = "validation"

    result = evaluator()

    x, y = _arrays(dataset)
    assert set(result) == {
        f"validation/{name}/{key}"
        for name in ("main", "second")
        for key in ("loss", "accuracy")
    }
    for name, model in (("main", first), ("second", second)):
        expected = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
        for key, value in expected.items():
            np.testing.assert_allclose(
                result[f"validation/{name}/{key}"], value, rtol=1e-6, atol=1e-7
            )


def test_eval_func_reports_are_averaged_weighted_by_batch_size():
    model = make_classifier()
    dataset = make_dataset(50, seed=3)  # batches of 16, 16, 16 and 2
    calls = []

    def eval_func(x, y):
        calls.append(len(x))
        ktrainer.report({"x_mean": keras.ops.mean(x), "y_max": float(np.max(y))}, model)

    evaluator = Evaluator(_val_iterator(dataset, 16), model, eval_func=eval_func)
    evaluator.name = "validation"
    result = evaluator()

    x, y = _arrays(dataset)
    assert calls == [16, 16, 16, 2]
    assert set(result) == {"validation/main/x_mean", "validation/main/y_max"}
    np.testing.assert_allclose(result["validation/main/x_mean"], x.mean(), rtol=1e-5)
    batch_max = [y[i : i + 16].max() for i in range(0, 50, 16)]
    expected = np.average(batch_max, weights=[16, 16, 16, 2])
    np.testing.assert_allclose(result["validation/main/y_max"], expected)


def test_eval_func_gets_dict_batches_as_keywords():
    seen = []
    dataset = [{"a": np.float32(i), "b": np.float32(2 * i)} for i in range(6)]

    def eval_func(a, b):
        seen.append((a.tolist(), b.tolist()))
        ktrainer.report({"s": float(np.sum(a + b))})

    evaluator = Evaluator(
        _val_iterator(dataset, 4), make_classifier(), eval_func=eval_func
    )
    result = evaluator()
    assert seen == [([0, 1, 2, 3], [0, 2, 4, 6]), ([4, 5], [8, 10])]
    np.testing.assert_allclose(result["s"], (18 * 4 + 27 * 2) / 6)


def test_eval_hook_runs_before_each_evaluation():
    model = make_classifier()
    order = []
    evaluator = Evaluator(
        _val_iterator(make_dataset(8), 8),
        model,
        eval_hook=lambda ev: order.append(("hook", ev)),
        eval_func=lambda x, y: order.append("batch"),
    )
    evaluator()
    evaluator()
    assert order == [("hook", evaluator), "batch", ("hook", evaluator), "batch"]


def test_plain_list_of_batches_is_copied_and_reused():
    model = make_classifier()
    dataset = make_dataset(20, seed=4)
    batches = [dataset[:8], dataset[8:16], dataset[16:]]
    evaluator = Evaluator(batches, model)
    assert evaluator() == evaluator()
    x, y = _arrays(dataset)
    expected = model.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
    np.testing.assert_allclose(evaluator()["main/loss"], expected["loss"], rtol=1e-6)


def test_device_cpu_gives_the_same_results():
    model = make_classifier()
    dataset = make_dataset(20)
    default = Evaluator(_val_iterator(dataset, 8), model)()
    on_cpu = Evaluator(_val_iterator(dataset, 8), model, device="cpu")()
    np.testing.assert_allclose(on_cpu["main/loss"], default["main/loss"], rtol=1e-6)


def test_in_a_trainer_results_reach_the_observation_and_the_log(tmp_out):
    model = make_classifier()
    val = make_dataset(30, seed=5)
    updater = StandardUpdater(SerialIterator(make_dataset(), 16), model)
    trainer = training.Trainer(updater, (2, "epoch"), out=tmp_out)
    evaluator = Evaluator(_val_iterator(val, 16), model)
    trainer.extend(evaluator)
    trainer.extend(LogReport(filename=None))
    seen = []
    trainer.extend(
        lambda t: seen.append(sorted(k for k in t.observation if "validation" in k)),
        name="probe",
        trigger=(1, "epoch"),
        priority=training.PRIORITY_EDITOR,
    )
    trainer.run()

    keys = ["validation/main/accuracy", "validation/main/loss"]
    assert evaluator.name == "validation"
    assert seen == [keys, keys]
    log = trainer.get_extension("LogReport").log
    assert [entry["epoch"] for entry in log] == [1, 2]
    assert all(set(keys) <= set(entry) for entry in log)
    # The last evaluation ran after the last update: same weights as now.
    x, y = _arrays(val)
    expected = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    np.testing.assert_allclose(
        log[-1]["validation/main/loss"], expected["loss"], rtol=1e-5
    )
    np.testing.assert_allclose(
        log[-1]["validation/main/accuracy"], expected["accuracy"], rtol=1e-6
    )


def test_class_defaults():
    assert Evaluator.trigger == (1, "epoch")
    assert Evaluator.priority == training.PRIORITY_WRITER
    assert Evaluator.default_name == "validation"
    assert Evaluator.needs_model_state is True


BAD_ARGS = [
    (
        "repeating_iterator",
        lambda m: Evaluator(SerialIterator(make_dataset(8), 4), m),
        ValueError,
        "repeat",
    ),
    (
        "no_main_iterator",
        lambda m: Evaluator({"val": _val_iterator(make_dataset(8), 4)}, m),
        ValueError,
        "'main'",
    ),
    (
        "not_an_iterator",
        lambda m: Evaluator(3, m),
        TypeError,
        "iterator",
    ),
    (
        "uncompiled_model",
        lambda m: Evaluator(_val_iterator(make_dataset(8), 4), keras.Sequential()),
        ValueError,
        "compiled",
    ),
    (
        "not_a_model",
        lambda m: Evaluator(_val_iterator(make_dataset(8), 4), object()),
        TypeError,
        "compiled",
    ),
    (
        "converter_not_callable",
        lambda m: Evaluator(_val_iterator(make_dataset(8), 4), m, converter=1),
        TypeError,
        "converter",
    ),
    (
        "eval_func_not_callable",
        lambda m: Evaluator(_val_iterator(make_dataset(8), 4), m, eval_func=1),
        TypeError,
        "eval_func",
    ),
    (
        "bad_device",
        lambda m: Evaluator(_val_iterator(make_dataset(8), 4), m, device="qpu"),
        ValueError,
        "device",
    ),
]


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [case[1:] for case in BAD_ARGS],
    ids=[case[0] for case in BAD_ARGS],
)
def test_bad_arguments_are_rejected(make, error, match):
    with pytest.raises(error, match=match):
        make(make_classifier())


class _PyBatches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[part], self.y[part]


# (what is given to the Evaluator, the batch size model.evaluate must use)
DATA_AS_GIVEN = [
    ("arrays", lambda x, y: (x, y), 32),
    ("tuple-dataset", lambda x, y: TupleDataset(x, y), 32),
    ("as-iterator-arrays", lambda x, y: as_iterator((x, y), batch_size=16), 16),
    ("py-dataset", lambda x, y: _PyBatches(x, y, 16), 16),
    ("as-iterator-py-dataset", lambda x, y: as_iterator(_PyBatches(x, y, 16)), 16),
]


@pytest.mark.parametrize(
    ("build", "batch_size"),
    [case[1:] for case in DATA_AS_GIVEN],
    ids=[case[0] for case in DATA_AS_GIVEN],
)
def test_arrays_datasets_and_as_iterator_output_are_read_once(build, batch_size):
    model = make_classifier()
    x, y = _arrays(make_dataset(50, seed=2))
    evaluator = Evaluator(build(x, y), model)
    assert evaluator.get_iterator().repeat is False

    first = evaluator()
    assert evaluator() == first

    expected = model.evaluate(x, y, batch_size=batch_size, return_dict=True, verbose=0)
    assert set(first) == {"main/loss", "main/accuracy"}
    for key, value in expected.items():
        np.testing.assert_allclose(first["main/" + key], value, rtol=1e-6, atol=1e-7)


def test_feed_the_data_you_have_in_a_trainer(tmp_out):
    # The README's recipe: arrays for training and for validation.
    model = make_classifier()
    x, y = _arrays(make_dataset(40, seed=6))
    xv, yv = _arrays(make_dataset(20, seed=7))
    updater = StandardUpdater(as_iterator((x, y), batch_size=16), model)
    trainer = training.Trainer(updater, (2, "epoch"), out=tmp_out)
    trainer.extend(Evaluator((xv, yv), model))
    trainer.extend(Evaluator(as_iterator((xv, yv), batch_size=8), model), name="v8")
    trainer.extend(LogReport(filename=None))
    trainer.run()

    log = trainer.get_extension("LogReport").log
    assert [entry["epoch"] for entry in log] == [1, 2]
    expected = model.evaluate(xv, yv, return_dict=True, verbose=0)
    np.testing.assert_allclose(
        log[-1]["validation/main/loss"], expected["loss"], rtol=1e-5
    )
    np.testing.assert_allclose(log[-1]["v8/main/loss"], expected["loss"], rtol=1e-5)
