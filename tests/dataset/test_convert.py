"""concat_examples, to_device and parse_device."""

from __future__ import annotations

from collections import namedtuple

import keras
import numpy as np
import pytest

from ktrainer._backend import distribute
from ktrainer.dataset import TupleDataset, concat_examples, to_device
from ktrainer.dataset._example_batch import ExampleBatch
from ktrainer.dataset.convert import parse_device

A = np.array

# (batch, padding, expected)
CONCAT = [
    (
        [(A([1, 2]), 0), (A([3, 4]), 1), (A([5, 6]), 2)],
        None,
        (A([[1, 2], [3, 4], [5, 6]]), A([0, 1, 2])),
    ),
    (
        [{"x": A([1.0]), "t": 0}, {"x": A([2.0]), "t": 1}],
        None,
        {"x": A([[1.0], [2.0]]), "t": A([0, 1])},
    ),
    ([A([1, 2]), A([3, 4])], None, A([[1, 2], [3, 4]])),
    ([1.5, 2.5, 3.5], None, A([1.5, 2.5, 3.5])),
    ([([1, 2], 1), ([3, 4], 2)], None, (A([[1, 2], [3, 4]]), A([1, 2]))),
    (
        [(A([1, 2]), 0), (A([3]), 1), (A([], dtype=int), 2)],
        100,
        (A([[1, 2], [3, 100], [100, 100]]), A([0, 1, 2])),
    ),
    (
        [(A([1, 2]), A([0])), (A([3]), A([], dtype=int)), (A([], dtype=int), A([2]))],
        (100, 200),
        (A([[1, 2], [3, 100], [100, 100]]), A([[0], [200], [2]])),
    ),
    (
        [{"x": A([1, 2]), "t": A([0])}, {"x": A([3]), "t": A([], dtype=int)}],
        {"x": -1, "t": 9},
        {"x": A([[1, 2], [3, -1]]), "t": A([[0], [9]])},
    ),
    ([A([[1, 2]]), A([[3], [4]])], 0, A([[[1, 2], [0, 0]], [[3, 0], [4, 0]]])),
    ([[1, 2], [3]], 0, A([[1, 2], [3, 0]])),
]
CONCAT_IDS = [
    "tuple",
    "dict",
    "array",
    "python-floats",
    "python-lists",
    "tuple-scalar-padding",
    "tuple-per-component-padding",
    "dict-per-key-padding",
    "array-2d-padding",
    "ragged-lists-padding",
]


def _assert_same(got, expected):
    if isinstance(expected, tuple):
        assert isinstance(got, tuple)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            _assert_same(g, e)
    elif isinstance(expected, dict):
        assert isinstance(got, dict)
        assert list(got) == list(expected)
        for key in expected:
            _assert_same(got[key], expected[key])
    else:
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, expected)
        assert got.dtype.kind == expected.dtype.kind


@pytest.mark.parametrize(("batch", "padding", "expected"), CONCAT, ids=CONCAT_IDS)
def test_concat_examples(batch, padding, expected):
    _assert_same(concat_examples(batch, padding=padding), expected)


def test_concat_keeps_dtype_with_padding():
    batch = [(A([1, 2], dtype="float16"),), (A([3], dtype="float16"),)]
    (x,) = concat_examples(batch, padding=0)
    assert x.dtype == np.float16


def test_concat_stacks_backend_tensors():
    batch = [keras.ops.ones((2,)), keras.ops.zeros((2,))]
    stacked = concat_examples(batch)
    assert keras.ops.is_tensor(stacked)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(stacked), [[1, 1], [0, 0]])


# (batch, padding, error type, words the message must contain)
BAD_CONCAT = [
    ([], None, ValueError, "batch"),
    (None, None, TypeError, "batch"),
    ({"x": A([1])}, None, TypeError, "batch"),
    ([(A([1]), 0), {"x": A([1])}], None, ValueError, "example 1"),
    ([(A([1]), 0), (A([1]),)], None, ValueError, "tuple of 1"),
    ([{"x": 1}, {"y": 1}], None, ValueError, "keys"),
    ([A([1]), (A([1]), 0)], None, ValueError, "batch"),
    ([(A([1, 2]), 0), (A([3]), 1)], None, ValueError, "component 0"),
    ([{"x": A([1, 2])}, {"x": A([3])}], None, ValueError, "key 'x'"),
    ([[1, 2], [3]], None, ValueError, "shape"),
    ([(A([1]), 0)], (1, 2, 3), ValueError, "padding"),
    ([(A([1]), 0)], {"x": 0}, TypeError, "padding"),
    ([{"x": A([1])}], (0,), TypeError, "padding"),
    ([{"x": A([1])}], {"y": 0}, ValueError, "padding"),
    ([A([1])], (0,), TypeError, "padding"),
    ([A([1]), A([[1]])], 0, ValueError, "dimensions"),
]
BAD_CONCAT_IDS = [
    "empty",
    "none",
    "dict-not-list",
    "tuple-then-dict",
    "tuple-lengths-differ",
    "dict-keys-differ",
    "array-then-tuple",
    "ragged-tuple-component",
    "ragged-dict-key",
    "ragged-lists",
    "padding-tuple-too-long",
    "padding-dict-for-tuples",
    "padding-tuple-for-dicts",
    "padding-dict-missing-key",
    "padding-tuple-for-arrays",
    "padding-ndim-mismatch",
]


@pytest.mark.parametrize(
    ("batch", "padding", "error", "words"), BAD_CONCAT, ids=BAD_CONCAT_IDS
)
def test_concat_bad_input_is_explained(batch, padding, error, words):
    with pytest.raises(error, match=words) as info:
        concat_examples(batch, padding=padding)
    assert "Received" in str(info.value)


def test_concat_of_example_batch_returns_the_stacked_arrays():
    x, y = np.arange(8.0).reshape(4, 2), np.arange(4)
    batch = ExampleBatch((x[[2, 0]], y[[2, 0]]))
    bx, by = concat_examples(batch)
    assert bx is batch.stacked[0]
    assert by is batch.stacked[1]
    slow = concat_examples(list(batch))
    np.testing.assert_array_equal(bx, slow[0])
    np.testing.assert_array_equal(by, slow[1])
    assert concat_examples(batch, padding=(0, 0))[0] is bx


def test_concat_after_mutation_uses_the_examples():
    batch = ExampleBatch((np.zeros((2, 2)), np.arange(2)))
    batch[0] = (np.ones(2), 7)
    bx, by = concat_examples(batch)
    np.testing.assert_array_equal(bx, [[1, 1], [0, 0]])
    np.testing.assert_array_equal(by, [7, 1])


DEVICES = [None, -1, "cpu", "CPU:0", "@numpy", "/device:CPU:0"]


@pytest.mark.parametrize("device", DEVICES[1:], ids=[str(d) for d in DEVICES[1:]])
def test_to_device_makes_backend_tensors(device):
    Pair = namedtuple("Pair", ["a", "b"])
    x = {"x": np.ones((2, 3), "float32"), "rest": [Pair(np.arange(3), 2.0), None]}
    sent = to_device(device, x)
    assert keras.ops.is_tensor(sent["x"])
    assert tuple(sent["x"].shape) == (2, 3)
    assert isinstance(sent["rest"], list)
    assert isinstance(sent["rest"][0], Pair)
    assert keras.ops.is_tensor(sent["rest"][0].a)
    assert keras.ops.is_tensor(sent["rest"][0].b)
    assert sent["rest"][1] is None
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(sent["rest"][0].a), [0, 1, 2]
    )


def test_to_device_none_leaves_numpy_alone():
    x = (np.ones(2), np.zeros(3))
    assert to_device(None, x) is x


def test_concat_with_device_gives_tensors():
    x, y = concat_examples(
        TupleDataset(np.ones((3, 2), "float32"), np.arange(3))[:], device="cpu"
    )
    assert keras.ops.is_tensor(x)
    assert keras.ops.is_tensor(y)
    assert keras.ops.convert_to_numpy(x).dtype == np.float32


def test_to_device_rejects_strings():
    with pytest.raises(TypeError, match="x must hold arrays"):
        to_device("cpu", ["text"])


PARSE = [
    (None, None),
    (-1, "cpu:0"),
    (-5, "cpu:0"),
    (0, "gpu:0"),
    (2, "gpu:2"),
    (np.int64(1), "gpu:1"),
    ("cpu", "cpu:0"),
    (" GPU ", "gpu:0"),
    ("gpu:1", "gpu:1"),
    ("cuda:3", "gpu:3"),
    ("tpu", "tpu:0"),
    ("@numpy", "cpu:0"),
    ("@cupy:1", "gpu:1"),
    ("/gpu:0", "gpu:0"),
    ("/device:GPU:1", "gpu:1"),
]


@pytest.mark.parametrize(("device", "expected"), PARSE, ids=[repr(d) for d, _ in PARSE])
def test_parse_device(device, expected):
    assert parse_device(device, check=False) == expected


@pytest.mark.parametrize(
    ("device", "error"),
    [
        ("gpu0", ValueError),
        ("npu:1", ValueError),
        ("", ValueError),
        (1.0, TypeError),
        (True, TypeError),
        (["cpu"], TypeError),
    ],
    ids=["no-colon", "unknown-kind", "empty", "float", "bool", "list"],
)
def test_bad_device_is_named(device, error):
    for call in (lambda: parse_device(device), lambda: to_device(device, np.ones(1))):
        with pytest.raises(error, match="device") as info:
            call()
        assert "Received: device=" in str(info.value)


def _has_gpu() -> bool:
    return bool(distribute.device_names("gpu"))


def test_missing_device_error_is_the_same_on_every_backend():
    # tf.device would place on the CPU silently, jax and torch fail only
    # when a tensor is made; parse_device checks first, on every backend.
    backend = keras.config.backend()
    missing = ["gpu:7", "tpu", "cpu:5"] + ([] if _has_gpu() else ["gpu", 0])
    for device in missing:
        for call, args in (
            (parse_device, (device,)),
            (to_device, (device, np.ones(2))),
            (concat_examples, ([np.ones(2)], device)),
        ):
            with pytest.raises(ValueError, match="device must name") as info:
                call(*args)
            message = str(info.value)
            assert message.startswith("device must name a device this process")
            assert f"the {backend} backend sees" in message
            assert message.endswith(f"Received: device={device!r}")
    assert parse_device("gpu:7", check=False) == "gpu:7"


@pytest.mark.skipif(not _has_gpu(), reason="needs a visible GPU")
def test_gpu_device_places_tensors_there():
    for device in (0, "gpu", "gpu:0", "cuda:0", "@cupy:0"):
        sent = to_device(device, np.ones((2, 2), "float32"))
        assert "gpu" in str(_tensor_device(sent)).lower() or "cuda" in str(
            _tensor_device(sent)
        )


def _tensor_device(tensor) -> str:
    device = getattr(tensor, "device", None)
    if callable(device):
        device = device()  # jax < 0.4.31 spelled it as a method
    if device is None:  # newer jax arrays: the set of their devices
        device = next(iter(tensor.devices()))
    return str(device)
