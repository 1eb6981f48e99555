"""Tests for `ktrainer.reporter`: Reporter scopes, observers and summaries."""

from __future__ import annotations

import json
import threading

import keras
import numpy as np
import pytest
from conftest import make_classifier

from ktrainer import _backend, serializers
from ktrainer import reporter as reporter_module
from ktrainer.reporter import (
    DictSummary,
    Reporter,
    Summary,
    get_current_reporter,
    report,
    report_scope,
)
from ktrainer.serializers import Deserializer, Serializer


def _tensor(x, dtype="float32"):
    return keras.ops.convert_to_tensor(np.asarray(x, dtype=dtype))


class _CountingConvert:
    """Counts device-to-host reads: `keras.ops.convert_to_numpy` and the
    backend seam's `host_view`, the two ways a value reaches the host."""

    def __init__(self, monkeypatch):
        self.calls = 0
        convert, view = keras.ops.convert_to_numpy, _backend.host_view
        monkeypatch.setattr(keras.ops, "convert_to_numpy", self._counting(convert))
        monkeypatch.setattr(_backend, "host_view", self._counting(view))

    def _counting(self, fn):
        def wrapper(x):
            self.calls += 1
            return fn(x)

        return wrapper


# --- Reporter ---------------------------------------------------------------


def test_scope_makes_current_and_directs_reports():
    reporter = Reporter()
    observation = {}
    with reporter.scope(observation):
        assert get_current_reporter() is reporter
        report({"x": 1.0, "y": 2})
    assert observation == {"x": 1.0, "y": 2}
    assert reporter.observation == {}
    with pytest.raises(RuntimeError, match="no current reporter"):
        get_current_reporter()


def test_nested_scopes_of_two_reporters():
    outer, inner = Reporter(), Reporter()
    outer_obs, inner_obs = {}, {}
    with outer.scope(outer_obs):
        report({"a": 1})
        with inner.scope(inner_obs):
            assert get_current_reporter() is inner
            report({"b": 2})
        assert get_current_reporter() is outer
        report({"c": 3})
    assert outer_obs == {"a": 1, "c": 3}
    assert inner_obs == {"b": 2}


def test_nested_scopes_of_one_reporter_restore_observation():
    reporter = Reporter()
    first, second = {}, {}
    with reporter.scope(first):
        with reporter.scope(second):
            report({"in": 1})
        report({"out": 2})
        assert reporter.observation is first
    assert (first, second) == ({"out": 2}, {"in": 1})


def test_enter_exit_push_and_pop():
    reporter = Reporter()
    with reporter as entered:
        assert entered is reporter
        assert get_current_reporter() is reporter
        report({"x": 3})
    assert reporter.observation == {"x": 3}
    with pytest.raises(RuntimeError):
        get_current_reporter()


def test_report_scope_swaps_observation_without_pushing():
    reporter = Reporter()
    outer, inner = {}, {}
    with reporter.scope(outer):
        with report_scope(inner):
            assert get_current_reporter() is reporter
            report({"x": 1})
        report({"y": 2})
    assert (outer, inner) == ({"y": 2}, {"x": 1})


def test_report_scope_without_current_reporter_raises():
    with pytest.raises(RuntimeError, match="no current reporter"), report_scope({}):
        pass


def test_scope_is_undone_on_exception():
    reporter = Reporter()
    before = reporter.observation

    def fail_inside_scope():
        with reporter.scope({}):
            report({"x": 1})
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_inside_scope()
    assert reporter.observation is before
    report({"dropped": 1})
    assert before == {}
    with pytest.raises(RuntimeError):
        get_current_reporter()


def test_report_outside_any_scope_is_dropped():
    reporter = Reporter()
    report({"x": 1.0}, observer=object())  # not even the observer is checked
    assert reporter.observation == {}


def test_current_reporter_is_per_thread():
    seen = []
    reporter = Reporter()
    with reporter.scope({}):
        thread = threading.Thread(target=lambda: seen.append(_current_or_none()))
        thread.start()
        thread.join()
        assert get_current_reporter() is reporter
    assert seen == [None]


def _current_or_none():
    try:
        return get_current_reporter()
    except RuntimeError:
        return None


OBSERVER_CASES = [
    ("model", "main/loss"),
    ("hidden", "main/hidden/loss"),
    ("logits", "main/logits/loss"),
]


@pytest.mark.parametrize(
    ("observer", "expected_key"), OBSERVER_CASES, ids=[c[0] for c in OBSERVER_CASES]
)
def test_observer_name_prefixes_keys(observer, expected_key):
    model = make_classifier()
    reporter = Reporter()
    reporter.add_observer("main", model)
    reporter.add_observers(
        "main", [("/" + layer.name, layer) for layer in model.layers]
    )
    target = model if observer == "model" else model.get_layer(observer)
    observation = {}
    with reporter.scope(observation):
        report({"loss": 0.25}, target)
        reporter.report({"n": 1}, target)
    prefix = expected_key.rsplit("/", 1)[0]
    assert observation == {expected_key: 0.25, prefix + "/n": 1}


def test_observers_are_told_apart_by_identity():
    reporter = Reporter()
    first, second = [1], [1]  # equal, but distinct objects
    reporter.add_observer("first", first)
    reporter.add_observer("second", second)
    observation = {}
    with reporter.scope(observation):
        report({"x": 1}, second)
    assert observation == {"second/x": 1}


@pytest.mark.parametrize("via_module", [True, False], ids=["report", "method"])
def test_unregistered_observer_raises_key_error(via_module):
    reporter = Reporter()
    observer = make_classifier()
    observation = {}
    send = report if via_module else reporter.report
    with (
        reporter.scope(observation),
        pytest.raises(KeyError, match=r"observer must be registered.*classifier"),
    ):
        send({"x": 1}, observer)
    assert observation == {}


def test_report_rejects_non_mapping():
    with pytest.raises(TypeError, match="values must be a dict"):
        Reporter().report([("x", 1)])


def test_report_keeps_tensors_without_copying_to_host(monkeypatch):
    counter = _CountingConvert(monkeypatch)
    loss = _tensor(0.5)
    observation = {}
    with Reporter().scope(observation):
        report({"loss": loss})
    assert counter.calls == 0
    assert keras.ops.is_tensor(observation["loss"])
    assert float(keras.ops.convert_to_numpy(observation["loss"])) == 0.5


@pytest.mark.backend("torch")
def test_report_detaches_torch_tensors_from_the_graph():
    variable = keras.Variable(2.0)
    value = keras.ops.multiply(variable.value, 3.0)
    assert value.requires_grad
    observation = {}
    with Reporter().scope(observation):
        report({"y": value})
    assert not observation["y"].requires_grad
    assert float(keras.ops.convert_to_numpy(observation["y"])) == 6.0


# --- Summary ----------------------------------------------------------------

SUMMARY_CASES = [
    ("floats", [1.0, 2.0, 4.0], None, "python"),
    ("ints", [1, 2, 3, 10], None, "python"),
    ("numpy", [0.5, -1.5, 2.25], None, "numpy"),
    ("tensors", [0.5, -1.5, 2.25, 8.0], None, "tensor"),
    ("weighted_floats", [1.0, 2.0, 4.0], [1.0, 3.0, 0.5], "python"),
    ("weighted_tensors", [1.0, 2.0, 4.0], [2.0, 1.0, 0.5], "tensor"),
    ("mixed", [1.0, 2.0, 4.0, 7.0], [1, 2.0, 0.5, 3], "mixed"),
]


def _as_kind(x, kind, i):
    if kind == "python":
        return x
    if kind == "numpy":
        return np.float32(x)
    if kind == "tensor":
        return _tensor(x)
    return _tensor(x) if i % 2 else x  # mixed: alternate host and device


@pytest.mark.parametrize(
    ("values", "weights", "kind"),
    [c[1:] for c in SUMMARY_CASES],
    ids=[c[0] for c in SUMMARY_CASES],
)
def test_summary_matches_numpy(values, weights, kind):
    summary = Summary()
    for i, value in enumerate(values):
        if weights is None:
            summary.add(_as_kind(value, kind, i))
        else:
            summary.add(_as_kind(value, kind, i), _as_kind(weights[i], kind, i + 1))
    w = np.ones(len(values)) if weights is None else np.asarray(weights, float)
    x = np.asarray(values, float)
    mean = np.average(x, weights=w)
    std = np.sqrt(np.average((x - mean) ** 2, weights=w))
    got_mean = summary.compute_mean()
    got_stats = summary.make_statistics()
    assert type(got_mean) is float
    assert all(type(v) is float for v in got_stats)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(got_stats, (mean, std), rtol=1e-6)


def test_summary_std_is_clipped_at_zero():
    # Rounding makes E[x**2] - mean**2 of these slightly negative.
    summary = Summary()
    for _ in range(6):
        summary.add(2.3)
    mean, std = summary.make_statistics()
    assert std == 0.0
    np.testing.assert_allclose(mean, 2.3)


def test_summary_lazy_path_copies_only_when_folding(monkeypatch):
    counter = _CountingConvert(monkeypatch)
    rng = np.random.default_rng(0)
    values = rng.normal(size=2500).astype("float32")
    summary = Summary()
    for value in values[: Summary.fold_every - 1]:
        summary.add(_tensor(value))
    assert counter.calls == 0  # nothing copied while adding
    for value in values[Summary.fold_every - 1 :]:
        summary.add(_tensor(value))
    assert counter.calls == 2000  # folded at 1000 and at 2000 values
    mean, std = summary.make_statistics()
    assert counter.calls == 2500
    x = values.astype(np.float64)
    np.testing.assert_allclose(mean, x.mean(), rtol=1e-9)
    np.testing.assert_allclose(std, x.std(), rtol=1e-9)
    assert summary.compute_mean() == mean
    assert counter.calls == 2500  # nothing left pending


def test_summary_reads_a_variable_when_added():
    variable = keras.Variable(1.0)
    summary = Summary()
    summary.add(variable)
    variable.assign(5.0)
    summary.add(variable)
    assert summary.compute_mean() == 3.0


BAD_ADD_CASES = [
    ("vector_value", lambda: (np.zeros(3), 1), ValueError, "value must be a scalar"),
    ("vector_tensor", lambda: (_tensor([1.0, 2.0]), 1), ValueError, r"shape \(2,\)"),
    ("matrix_weight", lambda: (1.0, np.ones((2, 2))), ValueError, "weight must be"),
    ("string_value", lambda: ("1.0", 1), TypeError, "value of type str"),
    ("none_weight", lambda: (1.0, None), TypeError, "weight of type NoneType"),
]


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [c[1:] for c in BAD_ADD_CASES],
    ids=[c[0] for c in BAD_ADD_CASES],
)
def test_summary_rejects_non_scalars(make, error, match):
    summary = Summary()
    value, weight = make()
    with pytest.raises(error, match=match):
        summary.add(value, weight)


@pytest.mark.parametrize("weight", [None, 0.0], ids=["empty", "zero_weight"])
def test_summary_without_weight_cannot_average(weight):
    summary = Summary()
    if weight is not None:
        summary.add(3.0, weight)
    with pytest.raises(ZeroDivisionError, match="nonzero total weight"):
        summary.compute_mean()
    with pytest.raises(ZeroDivisionError):
        summary.make_statistics()


# --- DictSummary ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["python", "tensor"], ids=["floats", "tensors"])
def test_dict_summary_mean_and_statistics(kind):
    rows = [
        {"main/loss": 1.0, "main/accuracy": 0.5},
        {"main/loss": 3.0, "main/accuracy": 1.0},
        {"main/loss": 2.0},
    ]
    summary = DictSummary()
    for row in rows:
        summary.add({k: _as_kind(v, kind, 0) for k, v in row.items()})
    mean = summary.compute_mean()
    assert list(mean) == ["main/loss", "main/accuracy"]
    assert all(type(v) is float for v in mean.values())
    np.testing.assert_allclose(mean["main/loss"], 2.0)
    np.testing.assert_allclose(mean["main/accuracy"], 0.75)
    stats = summary.make_statistics()
    assert set(stats) == {
        "main/loss",
        "main/loss.std",
        "main/accuracy",
        "main/accuracy.std",
    }
    np.testing.assert_allclose(stats["main/loss.std"], np.std([1.0, 3.0, 2.0]))
    np.testing.assert_allclose(stats["main/accuracy.std"], 0.25)


def test_dict_summary_skips_non_scalars():
    summary = DictSummary()
    summary.add(
        {
            "scalar": 2.0,
            "array0d": np.array(4.0),
            "tensor0d": _tensor(6.0),
            "vector": np.arange(3.0),
            "tensor1d": _tensor([1.0, 2.0]),
            "text": "hello",
            "none": None,
            "list": [1.0],
        }
    )
    assert summary.compute_mean() == {"scalar": 2.0, "array0d": 4.0, "tensor0d": 6.0}


def test_dict_summary_value_weight_tuples():
    summary = DictSummary()
    summary.add({"acc": (0.5, 10), "loss": (_tensor(1.0), _tensor(3.0))})
    summary.add({"acc": (1.0, 30), "loss": (3.0, 1)})
    mean = summary.compute_mean()
    np.testing.assert_allclose(mean["acc"], (0.5 * 10 + 1.0 * 30) / 40)
    np.testing.assert_allclose(mean["loss"], (1.0 * 3 + 3.0) / 4)


def test_dict_summary_rejects_non_scalar_weight():
    with pytest.raises(ValueError, match="weight of 'acc' must be a scalar"):
        DictSummary().add({"acc": (0.5, np.ones(2))})


def test_dict_summary_add_does_not_copy_to_host(monkeypatch):
    counter = _CountingConvert(monkeypatch)
    summary = DictSummary()
    for i in range(20):
        summary.add({"main/loss": _tensor(float(i)), "main/accuracy": _tensor(0.5)})
    assert counter.calls == 0
    assert summary.compute_mean() == {"main/loss": 9.5, "main/accuracy": 0.5}
    assert counter.calls == 40


# --- serialization ----------------------------------------------------------


class _DictSerializer(Serializer):
    """Stores values as arrays in a flat dict keyed by `group/.../key`."""

    def __init__(self, target=None, path=""):
        self.target = {} if target is None else target
        self.path = path

    def __getitem__(self, name):
        return _DictSerializer(self.target, self.path + name + "/")

    def __call__(self, key, value):
        self.target[self.path + key] = np.array(value)
        return value


class _DictDeserializer(Deserializer):
    """Returns the stored values, following the deserializer protocol."""

    def __init__(self, source, path=""):
        self.source = source
        self.path = path

    def __getitem__(self, name):
        return type(self)(self.source, self.path + name + "/")

    def __call__(self, key, value):
        stored = self.source[self.path + key]
        if isinstance(value, np.ndarray):
            np.copyto(value, stored)
            return value
        if value is None:
            return stored
        return type(value)(stored)


class _CheckingDeserializer(_DictDeserializer):
    """The first pass of a load: checks that keys exist, returns the values."""

    def __call__(self, key, value):
        self.source[self.path + key]
        return value


def _filled_dict_summary(n: int = 5, offset: float = 0.0) -> DictSummary:
    summary = DictSummary()
    for i in range(n):
        summary.add(
            {
                "main/loss": _tensor(i + offset),
                "validation/main/accuracy": (float(i) / n, 2),
                "lr": 0.1,
            }
        )
    return summary


def test_summary_serialize_round_trip_includes_pending_tensors():
    source = Summary()
    for i in range(4):
        source.add(_tensor(float(i)), weight=i + 1)
    saver = _DictSerializer()
    source.serialize(saver)
    assert set(saver.target) == {"_x", "_x2", "_n"}
    np.testing.assert_allclose(saver.target["_n"], 10.0)

    loaded = Summary()
    loaded.add(_tensor(100.0))  # replaced by the load
    loaded.serialize(_DictDeserializer(saver.target))
    assert loaded.make_statistics() == source.make_statistics()
    for summary in (source, loaded):
        summary.add(_tensor(7.0), 2)
    assert loaded.make_statistics() == source.make_statistics()


def test_summary_checking_pass_changes_nothing():
    saver = _DictSerializer()
    Summary().serialize(saver)
    summary = Summary()
    summary.add(1.0)
    summary.add(_tensor(3.0))  # pending
    summary.serialize(_CheckingDeserializer(saver.target))
    assert summary.make_statistics() == (2.0, 1.0)


def test_dict_summary_serialize_round_trip():
    source = _filled_dict_summary()
    saver = _DictSerializer()
    source.serialize(saver)
    names = json.loads(str(saver.target["_names"]))
    assert names == ["main/loss", "validation/main/accuracy", "lr"]
    assert "_summaries/1/_x" in saver.target  # keys with '/' are not paths

    loaded = DictSummary()
    loaded.add({"stale": 1.0, "main/loss": _tensor(50.0)})
    loaded.serialize(_DictDeserializer(saver.target))
    assert loaded.make_statistics() == source.make_statistics()
    assert list(loaded.compute_mean()) == names


def _summary_with_pending(n: int) -> DictSummary:
    summary = DictSummary()
    for i in range(n):
        summary.add({f"key{i}": (1.0 + i, 2)})
        summary.add({f"key{i}": _tensor(float(i))})  # pending until a fold
    return summary


@pytest.mark.parametrize("n_current", [0, 2, 5], ids=["empty", "fewer", "more"])
def test_dict_summary_checking_pass_changes_nothing(n_current):
    saver = _DictSerializer()
    _filled_dict_summary(offset=10.0).serialize(saver)  # 3 keys
    current = _summary_with_pending(n_current)
    current.serialize(_CheckingDeserializer(saver.target))
    twin = _summary_with_pending(n_current)
    assert current.make_statistics() == twin.make_statistics()
    assert len(current.compute_mean()) == n_current


def test_dict_summary_round_trip_with_library_serializers():
    source = _filled_dict_summary()
    saver = serializers.DictionarySerializer()
    source.serialize(saver)
    loaded = DictSummary()
    loaded.serialize(serializers.NpzDeserializer(saver.target))
    assert loaded.make_statistics() == source.make_statistics()


@pytest.mark.parametrize(
    ("n_saved", "n_current"),
    [(5, 0), (5, 2), (2, 5), (0, 3)],
    ids=["into_empty", "into_fewer", "into_more", "empty_into_filled"],
)
def test_dict_summary_hdf5_round_trip(tmp_path, n_saved, n_current):
    path = str(tmp_path / "summary.h5")
    source = DictSummary()
    for i in range(n_saved):
        source.add({f"main/key{i}": _tensor(float(i)), "main/loss": (i * 0.5, i + 1)})
    serializers.save_hdf5(path, source)
    loaded = DictSummary()
    for i in range(n_current):
        loaded.add({f"old/{i}": _tensor(1.0), "main/loss": 3.0})
    serializers.load_hdf5(path, loaded)
    assert loaded.make_statistics() == source.make_statistics()
    assert list(loaded.compute_mean()) == list(source.compute_mean())


def test_dict_summary_failed_hdf5_load_changes_nothing(tmp_path):
    path = str(tmp_path / "summary.h5")
    serializers.save_hdf5(path, Summary())  # no '_names' entry
    summary = _filled_dict_summary()
    before = summary.make_statistics()
    with pytest.raises(ValueError, match="_names"):
        serializers.load_hdf5(path, summary)
    assert summary.make_statistics() == before


def test_module_exports():
    assert reporter_module.__all__ == [
        "DictSummary",
        "Reporter",
        "Summary",
        "get_current_reporter",
        "report",
        "report_scope",
    ]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "int32"])
def test_summary_folds_tensors_of_any_numeric_dtype(dtype):
    summary = Summary()
    for value in (1.5, 2.5, 4.0):
        summary.add(keras.ops.convert_to_tensor(np.float32(value), dtype=dtype))
    expected = np.asarray([1.5, 2.5, 4.0]).astype(dtype).astype("float64").mean()
    assert summary.compute_mean() == pytest.approx(float(expected))
