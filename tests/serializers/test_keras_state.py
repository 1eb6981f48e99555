"""Tests for saving and loading Keras models, layers and optimizers."""

from __future__ import annotations

import re

import h5py
import keras
import numpy as np
import pytest
from conftest import make_classifier

from ktrainer.serializers import (
    DictionarySerializer,
    load_hdf5,
    load_npz,
    save_hdf5,
    save_npz,
    serialize_object,
)

FORMATS = [
    pytest.param(save_hdf5, load_hdf5, "snapshot.h5", id="hdf5"),
    pytest.param(save_npz, load_npz, "snapshot.npz", id="npz"),
]


class ModelState:
    """A model and its optimizer, saved side by side as the updater does."""

    def __init__(self, model):
        self.model = model

    def serialize(self, serializer):
        serialize_object(
            self.model.optimizer, serializer["optimizer"], model=self.model
        )
        serialize_object(self.model, serializer["model"])


def _batch(n_out=3):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 8)).astype("float32")
    return x, (np.arange(8) % n_out).astype("int32")


def _trained(steps=1, **kwargs):
    kwargs.setdefault("optimizer", keras.optimizers.Adam(0.01))
    model = make_classifier(**kwargs)
    for _ in range(steps):
        model.train_on_batch(*_batch(kwargs.get("n_out", 3)))
    return model


def _values(model):
    variables = model.variables + model.optimizer.variables
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(("save", "load", "name"), FORMATS)
def test_model_and_adam_state_round_trip(tmp_path, save, load, name):
    source = _trained(steps=2)
    path = tmp_path / name
    save(path, ModelState(source))
    target = make_classifier(optimizer=keras.optimizers.Adam(0.01))
    assert not target.optimizer.built  # slots are created by the load
    load(path, ModelState(target))
    _assert_same(_values(target), _values(source))
    assert int(keras.ops.convert_to_numpy(target.optimizer.iterations)) == 2
    # Training goes on identically from the loaded state.
    source.train_on_batch(*_batch())
    target.train_on_batch(*_batch())
    _assert_same(_values(target), _values(source))


def test_bare_model_round_trip_and_hdf5_keys(tmp_path):
    source = _trained()
    path = tmp_path / "model.h5"
    save_hdf5(path, source)
    with h5py.File(path, "r") as f:
        keys = []
        f.visititems(
            lambda name, node: (
                keys.append(name) if isinstance(node, h5py.Dataset) else None
            )
        )
        keys.remove(".ktrainer_checksums")  # the entries' checksums
        assert sorted(keys) == sorted(v.path for v in source.variables)
        kernel = source.get_layer("hidden").kernel
        np.testing.assert_array_equal(
            f["classifier/hidden/kernel"][()], keras.ops.convert_to_numpy(kernel)
        )
    target = make_classifier()
    load_hdf5(path, target)
    _assert_same(
        [keras.ops.convert_to_numpy(v) for v in target.variables],
        [keras.ops.convert_to_numpy(v) for v in source.variables],
    )


def test_optimizer_keys_drop_the_optimizer_name():
    model = _trained()
    target = {}
    serialize_object(model.optimizer, DictionarySerializer(target))
    assert "iteration" in target
    assert "learning_rate" in target
    assert "classifier_hidden_kernel_momentum" in target
    assert len(target) == len(model.optimizer.variables)


def test_optimizer_without_learning_rate_variable(tmp_path):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    source = _trained(optimizer=keras.optimizers.SGD(schedule, momentum=0.9))
    path = tmp_path / "sgd.h5"
    save_hdf5(path, ModelState(source))
    target = make_classifier(optimizer=keras.optimizers.SGD(schedule, momentum=0.9))
    load_hdf5(path, ModelState(target))
    _assert_same(_values(target), _values(source))


MISMATCHES = [
    (
        "hidden_width",
        {"n_hidden": 32},
        "'model/classifier/hidden/kernel'",
        "(8, 16)",
        "(8, 32)",
    ),
    (
        "output_width",
        {"n_out": 4},
        "'model/classifier/logits/kernel'",
        "(16, 3)",
        "(16, 4)",
    ),
]


@pytest.mark.parametrize(("save", "load", "name"), FORMATS)
@pytest.mark.parametrize(
    ("kwargs", "key", "found", "expected"),
    [row[1:] for row in MISMATCHES],
    ids=[row[0] for row in MISMATCHES],
)
def test_shape_mismatch_names_the_path_and_changes_nothing(
    tmp_path, save, load, name, kwargs, key, found, expected
):
    path = tmp_path / name
    save(path, ModelState(_trained()))
    target = _trained(**kwargs)
    before = _values(target)
    with pytest.raises(ValueError, match="nothing was loaded") as info:
        load(path, ModelState(target))
    message = str(info.value)
    assert key in message
    assert f"expected shape {expected} float32, found shape {found} float32" in message
    assert name in message
    _assert_same(_values(target), before)


def test_missing_entries_strict_and_not_strict(tmp_path):
    source = _trained()
    path = tmp_path / "model_only.h5"
    save_hdf5(path, source)
    target = _trained()
    before = _values(target)
    # The file lacks the optimizer: a strict load fails and changes nothing.
    with pytest.raises(ValueError, match="'optimizer/iteration': missing"):
        load_hdf5(path, ModelState(target))
    _assert_same(_values(target), before)
    # strict=False skips what is missing and loads the rest.
    load_hdf5(path, target, strict=False)
    _assert_same(
        [keras.ops.convert_to_numpy(v) for v in target.variables],
        [keras.ops.convert_to_numpy(v) for v in source.variables],
    )


def test_auto_numbered_names_get_a_hint(tmp_path):
    def unnamed():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    path = tmp_path / "unnamed.h5"
    save_hdf5(path, unnamed())
    with pytest.raises(ValueError, match="explicit name=") as info:
        load_hdf5(path, unnamed())
    message = str(info.value)
    assert "'sequential_1/dense_1/kernel': missing from the file" in message
    assert "'sequential/dense/kernel'" in message


class Counter:
    """One variable of a given dtype, as the optimizer's iteration counter."""

    def __init__(self, value, dtype):
        self.value = keras.Variable(
            np.asarray(value, dtype), dtype=dtype, trainable=False
        )

    def serialize(self, serializer):
        serializer("value", self.value)


class Saved:
    def __init__(self, value):
        self.value = value

    def serialize(self, serializer):
        serializer("value", self.value)


DTYPES = [
    ("int64_into_int32", np.asarray(7, "int64"), "int32", 7),
    ("uint32_into_int32", np.asarray([3, 1], "uint32"), "int32", [3, 1]),
    ("int32_into_float_var", np.asarray(7, "int32"), "float32", "float32"),
    ("float64_into_float32", np.asarray(7.0, "float64"), "float32", "float32"),
    ("float16_into_float32", np.asarray(7.0, "float16"), "float32", "float32"),
    ("int64_too_large", np.asarray(2**40, "int64"), "int32", "do not fit in int32"),
    ("bool_into_int32", np.asarray(True), "int32", "int32, found shape () bool"),
]


@pytest.mark.parametrize(
    ("saved", "dtype", "expected"),
    [row[1:] for row in DTYPES],
    ids=[row[0] for row in DTYPES],
)
def test_dtype_normalization(tmp_path, saved, dtype, expected):
    path = tmp_path / "counter.h5"
    save_hdf5(path, Saved(saved))
    counter = Counter(np.zeros(saved.shape), dtype)
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=re.escape(expected)):
            load_hdf5(path, counter)
        assert not keras.ops.convert_to_numpy(counter.value).any()
    else:
        load_hdf5(path, counter)
        assert counter.value.dtype == dtype
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(counter.value), expected
        )


def test_iteration_counter_of_another_backend(tmp_path):
    # TensorFlow's counter is int64, the others' int32: either loads anywhere.
    source = _trained(steps=3)
    path = tmp_path / "snapshot.h5"
    save_hdf5(path, ModelState(source))
    own = source.optimizer.iterations.dtype
    other = "int32" if own == "int64" else "int64"
    with h5py.File(path, "r+") as f:
        value = f["optimizer/iteration"][()]
        del f["optimizer/iteration"]
        f.create_dataset("optimizer/iteration", data=np.asarray(value, other))
        # Edited by hand: make it a file without checksums, as older ones are.
        del f[".ktrainer_checksums"]
        del f.attrs[".ktrainer_checksums"]
    target = make_classifier(optimizer=keras.optimizers.Adam(0.01))
    load_hdf5(path, ModelState(target))
    assert target.optimizer.iterations.dtype == own
    assert int(keras.ops.convert_to_numpy(target.optimizer.iterations)) == 3


def _dropout_net(seed):
    model = keras.Sequential(
        [
            keras.Input((8,), name="x"),
            keras.layers.Dense(16, name="hidden"),
            keras.layers.Dropout(0.5, seed=seed, name="dropout"),
            keras.layers.Dense(3, name="logits"),
        ],
        name="net",
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


@pytest.mark.parametrize(
    "seed",
    [
        pytest.param(1234, id="seeded"),
        pytest.param(
            None,
            id="unseeded",
            marks=pytest.mark.skip_backend(
                "torch",
                "Keras's torch Dropout without a seed draws from torch's global "
                "RNG, not from its seed generator",
            ),
        ),
    ],
)
def test_dropout_seed_generator_state_is_restored(tmp_path, seed):
    x = np.ones((4, 8), "float32")
    source = _dropout_net(seed)
    for _ in range(3):  # advance the seed generator
        source(x, training=True)
    target = _dropout_net(seed)
    # Seed generators are auto-numbered; their key names the owning layer.
    assert target.get_layer("dropout").seed_generator.state.path.startswith(
        "seed_generator_"
    )
    path = tmp_path / "net.h5"
    save_hdf5(path, source)
    with h5py.File(path, "r") as f:
        assert "net/dropout/seed_generator_state" in f
    load_hdf5(path, target)
    for _ in range(2):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(target(x, training=True)),
            keras.ops.convert_to_numpy(source(x, training=True)),
        )


def test_unbuilt_optimizer_without_model_is_a_clear_error(tmp_path):
    source = _trained()
    path = tmp_path / "adam.h5"
    save_hdf5(path, source.optimizer)
    optimizer = keras.optimizers.Adam(0.01)
    with pytest.raises(
        RuntimeError, match=r"optimizer.build\(model.trainable_variables\)"
    ):
        load_hdf5(path, optimizer)
    optimizer.build(make_classifier().trainable_variables)
    load_hdf5(path, optimizer)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 1


def test_unbuilt_model_is_a_clear_error(tmp_path):
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.dense = keras.layers.Dense(2, name="dense")

        def call(self, x):
            return self.dense(x)

    built = Net()
    built(np.ones((1, 3), "float32"))
    path = tmp_path / "net.h5"
    save_hdf5(path, built)
    with pytest.raises(RuntimeError, match="must be built"):
        load_hdf5(path, Net())


def test_layer_round_trip(tmp_path):
    layer = keras.layers.Dense(3, name="solo")
    layer.build((None, 2))
    path = tmp_path / "layer.npz"
    save_npz(path, layer)
    other = keras.layers.Dense(3, name="solo")
    other.build((None, 2))
    load_npz(path, other)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(other.kernel),
        keras.ops.convert_to_numpy(layer.kernel),
    )


@pytest.mark.parametrize(("save", "load", "name"), FORMATS)
def test_bfloat16_variables_round_trip(tmp_path, save, load, name):
    def layer():
        dense = keras.layers.Dense(3, dtype="bfloat16", name="half")
        dense.build((None, 2))
        return dense

    source = layer()
    source.kernel.assign(np.arange(6).reshape(2, 3) / 7)
    path = tmp_path / name
    save(path, source)
    target = layer()
    load(path, target)
    assert target.kernel.dtype == "bfloat16"
    expected = keras.ops.convert_to_numpy(source.kernel)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(target.kernel), expected)
    assert len(np.unique(expected)) == 6


def test_serialize_method_takes_precedence():
    class Custom(keras.layers.Layer):
        def serialize(self, serializer):
            serializer("custom", 1)

    target = {}
    serialize_object(Custom(), DictionarySerializer(target))
    assert list(target) == ["custom"]


@pytest.mark.parametrize("obj", [object(), 3, "model"], ids=["object", "int", "str"])
def test_unsupported_object_is_a_type_error(obj):
    with pytest.raises(TypeError, match="obj must have a serialize"):
        serialize_object(obj, DictionarySerializer())
