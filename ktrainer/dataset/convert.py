"""Converters: from a list of examples to arrays, and from arrays to a device.

`concat_examples` is the default converter of `StandardUpdater` and
`Evaluator`, as in Chainer. Devices are named as in Chainer (`None`, `-1`,
`0`, `'cpu'`, `'gpu:1'`) and resolved by `parse_device` to a Keras device
name, so placement works the same way under every Keras backend.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from ktrainer._backend import distribute
from ktrainer.dataset._example_batch import ExampleBatch

DeviceSpec = int | str | None
"""A device: `None` (leave arrays as they are), an int (negative for the
host, `N >= 0` for accelerator `N`), or a name such as `'cpu'`, `'gpu'`,
`'gpu:1'`, `'cuda:0'` or Chainer's `'@numpy'` and `'@cupy:0'`."""

_DEVICE_NAME = re.compile(r"/?(?:device:)?(cpu|gpu|cuda|tpu)(?::(\d+))?")
_CHAINER_NAMES = {"@numpy": "cpu:0", "@cupy": "gpu:0"}
_CUPY_NAME = re.compile(r"@cupy:(\d+)")


def parse_device(device: DeviceSpec, *, check: bool = True) -> str | None:
    """Resolves a Chainer-style device spec to a Keras device name.

    The updater and `Evaluator` resolve their `device` with it when they
    are built, so a device this machine lacks is an error then, the same
    under every backend (TensorFlow would otherwise place on the CPU
    silently, JAX and torch fail only at the first batch).

    Args:
        device: see `DeviceSpec`: `None`, an int, or a device name.
        check: whether to raise when the device does not exist here.
            Defaults to `True`.

    Returns:
        A Keras device name such as `'cpu:0'` or `'gpu:1'` for
        `keras.device`, or `None` when `device` is `None`.

    Raises:
        TypeError: if `device` is neither `None`, an int nor a string.
        ValueError: if the string names no known device, or (with
            `check`) a device this process cannot use.
    """
    name = _device_name(device)
    if check and name is not None:
        _check_exists(name, device)
    return name


def _device_name(device: DeviceSpec) -> str | None:
    if device is None:
        return None
    if isinstance(device, numbers.Integral) and not isinstance(device, bool):
        return "cpu:0" if device < 0 else f"gpu:{int(device)}"
    if not isinstance(device, str):
        raise TypeError(
            "device must be None, an int or a device name such as 'gpu:0'. "
            f"Received: device={device!r} of type {type(device).__name__}"
        )
    spec = device.strip().lower()
    if spec in _CHAINER_NAMES:
        return _CHAINER_NAMES[spec]
    cupy = _CUPY_NAME.fullmatch(spec)
    if cupy:
        return f"gpu:{int(cupy[1])}"
    match = _DEVICE_NAME.fullmatch(spec)
    if match is None:
        raise ValueError(
            "device must be None, an int, 'cpu', 'gpu', 'gpu:N' or another "
            f"Keras device name such as 'cpu:0'. Received: device={device!r}"
        )
    kind = "gpu" if match[1] == "cuda" else match[1]
    return f"{kind}:{int(match[2] or 0)}"


def to_device(device: DeviceSpec, x: Any) -> Any:
    """Sends arrays to a device as backend tensors.

    `x` may be an array, a tensor, a number, or tuples, lists and dicts of
    them (nested); the structure is kept and every leaf is converted with
    `keras.ops.convert_to_tensor` under `keras.device`. With
    `device=None` nothing is converted: numpy arrays stay numpy arrays.

    Args:
        device: where to put the arrays (see `DeviceSpec`); `None` returns
            `x` unchanged.
        x: the arrays to send.

    Returns:
        `x` with its arrays as backend tensors on `device`.

    Raises:
        ValueError: if `device` is malformed, or names a device this
            machine does not have.
    """
    name = parse_device(device)
    if name is None:
        return x
    return _send(name, device, x)


def concat_examples(
    batch: Sequence, device: DeviceSpec = None, padding: Any = None
) -> Any:
    """Stacks a list of examples into arrays, one array per component.

    Examples that are tuples give a tuple of arrays, dicts give a dict of
    arrays (same keys), and arrays or numbers give one array; the batch
    axis comes first. Without `padding` every example's component must
    have the same shape. With `padding`, components are padded to the
    largest shape in the batch with that value.

    A batch from a numpy-backed dataset (an `ExampleBatch`, which
    `SerialIterator` returns for numpy arrays and `TupleDataset`s of
    them) is already stacked: its arrays are returned as they are.

    Args:
        batch: the examples, as an iterator returns them.
        device: where to send the arrays (see `to_device`). Defaults to
            `None` (numpy arrays).
        padding: the fill value: a scalar for every component, or a tuple
            (for tuple examples) or dict (for dict examples) with one value
            per component. Defaults to `None` (no padding).

    Returns:
        An array, a tuple of arrays or a dict of arrays.
    """
    name = parse_device(device)
    if isinstance(batch, ExampleBatch) and batch.stacked is not None:
        stacked = batch.stacked
        if padding is not None:
            width = len(stacked) if isinstance(stacked, tuple) else None
            _paddings(padding, width)
        # The examples share one shape per component, so padding is a no-op.
        result = stacked
    else:
        result = _concat_batch(batch, padding)
    return result if name is None else _send(name, device, result)


def _concat_batch(batch: Sequence, padding: Any) -> Any:
    if isinstance(batch, (dict, str, bytes)) or not hasattr(batch, "__len__"):
        raise TypeError(
            "batch must be a list of examples. Received: batch of type "
            f"{type(batch).__name__}"
        )
    if len(batch) == 0:
        raise ValueError("batch must hold at least one example. Received: batch=[]")
    first = batch[0]
    if isinstance(first, tuple):
        _check_structure(batch, lambda e: isinstance(e, tuple) and len(e) == len(first))
        pads = _paddings(padding, len(first))
        return tuple(
            _concat([e[i] for e in batch], pads[i], f" in component {i}")
            for i in range(len(first))
        )
    if isinstance(first, dict):
        keys = first.keys()
        _check_structure(batch, lambda e: isinstance(e, dict) and e.keys() == keys)
        pads = _paddings(padding, list(keys))
        return {
            key: _concat([e[key] for e in batch], pads[key], f" in key {key!r}")
            for key in keys
        }
    _check_structure(batch, lambda e: not isinstance(e, (tuple, dict)))
    _paddings(padding, None)
    return _concat(batch, padding, "")


def _check_structure(batch: Sequence, matches) -> None:
    for i, example in enumerate(batch):
        if not matches(example):
            raise ValueError(
                "batch must hold examples of one structure. Received: "
                f"{_describe(batch[0])} as example 0 and {_describe(example)} "
                f"as example {i}"
            )


def _describe(example: Any) -> str:
    if isinstance(example, tuple):
        return f"a tuple of {len(example)}"
    if isinstance(example, dict):
        return f"a dict with keys {list(example)}"
    shape = getattr(example, "shape", None)
    if shape is not None:
        return f"a {type(example).__name__} of shape {tuple(shape)}"
    return f"a {type(example).__name__}"


def _paddings(padding: Any, components: int | list | None) -> Any:
    """Checks `padding` against the example structure; returns one per part."""
    per_part = isinstance(padding, (tuple, list, dict))
    if components is None:
        if per_part:
            raise TypeError(
                "padding must be a scalar for examples that are arrays. "
                f"Received: padding={padding!r}"
            )
        return padding
    if isinstance(components, int):
        if isinstance(padding, dict):
            raise TypeError(
                "padding must be a scalar or a tuple for tuple examples. "
                f"Received: padding={padding!r}"
            )
        if not per_part:
            return [padding] * components
        if len(padding) != components:
            raise ValueError(
                f"padding must have one value per component ({components}). "
                f"Received: padding={padding!r}"
            )
        return list(padding)
    if isinstance(padding, (tuple, list)):
        raise TypeError(
            "padding must be a scalar or a dict for dict examples. "
            f"Received: padding={padding!r}"
        )
    if not per_part:
        return dict.fromkeys(components, padding)
    missing = [key for key in components if key not in padding]
    if missing:
        raise ValueError(
            f"padding must have a value for every key {components}. "
            f"Received: padding={padding!r}"
        )
    return padding


def _concat(values: Sequence, padding: Any, where: str) -> Any:
    first = values[0]
    if keras.ops.is_tensor(first):
        if padding is None:
            _check_shapes(values, where)
            return keras.ops.stack(values)
        arrays = [keras.ops.convert_to_numpy(v) for v in values]
        return keras.ops.convert_to_tensor(_pad(arrays, padding, where))
    if padding is not None:
        return _pad([np.asarray(v) for v in values], padding, where)
    try:
        if isinstance(first, np.ndarray):
            return np.stack(values)
        return np.asarray(values)
    except ValueError:
        _check_shapes(values, where)
        raise


def _check_shapes(values: Sequence, where: str) -> None:
    shapes = [_shape(v) for v in values]
    for i, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise ValueError(
                f"batch must hold examples of one shape{where} unless padding "
                f"is given. Received: shape {shapes[0]} in example 0 and "
                f"{shape} in example {i}"
            )


def _shape(value: Any) -> tuple | str:
    try:
        return tuple(np.shape(value))
    except ValueError:
        return "(ragged)"


def _pad(arrays: list, padding: Any, where: str) -> np.ndarray:
    ndims = {a.ndim for a in arrays}
    if len(ndims) > 1:
        raise ValueError(
            f"batch must hold examples with one number of dimensions{where} "
            f"to pad them. Received: ndims {sorted(ndims)}"
        )
    shape = np.max([a.shape for a in arrays], axis=0).astype(int)
    result = np.full((len(arrays), *shape), padding, dtype=arrays[0].dtype)
    for i, array in enumerate(arrays):
        result[(i, *(slice(n) for n in array.shape))] = array
    return result


def _send(name: str, device: DeviceSpec, x: Any) -> Any:
    try:
        with keras.device(name):
            return _convert_tree(x)
    except Exception:
        _check_available(name, device)
        raise


_EXISTING: set[str] = set()


def _check_exists(name: str, device: DeviceSpec) -> None:
    # Devices do not appear while a process runs, so a found one is
    # remembered: converters resolve the device for every batch.
    if name in _EXISTING:
        return
    kind, index = name.split(":")
    if not distribute.device_exists(kind, int(index)):
        seen = distribute.device_names(kind)
        sees = ", ".join(repr(n) for n in seen) if seen else f"no {kind} device"
        raise ValueError(
            "device must name a device this process can use; the "
            f"{keras.config.backend()} backend sees {sees}. "
            f"Received: device={device!r}"
        )
    _EXISTING.add(name)


def _check_available(name: str, device: DeviceSpec) -> None:
    """Raises a ValueError naming `device` if Keras cannot place on it."""
    try:
        with keras.device(name):
            keras.ops.convert_to_tensor(np.zeros(()))
    except Exception as error:
        raise ValueError(
            f"device {name!r} is not available under the "
            f"{keras.config.backend()} backend ({type(error).__name__}: "
            f"{error}). Received: device={device!r}"
        ) from error


def _convert_tree(x: Any) -> Any:
    if isinstance(x, tuple):
        items = [_convert_tree(v) for v in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    if isinstance(x, list):
        return [_convert_tree(v) for v in x]
    if isinstance(x, dict):
        return {key: _convert_tree(v) for key, v in x.items()}
    if x is None:
        return None
    if isinstance(x, (str, bytes)):
        raise TypeError(
            "x must hold arrays, tensors or numbers (in tuples, lists or "
            f"dicts). Received: a {type(x).__name__} {x!r}"
        )
    return keras.ops.convert_to_tensor(x)
