"""Value conversion shared by every serializer backend.

Serializers turn a value into one of three stored forms: the `NONE`
marker, a `str`, or a numpy array with a plain (non-object) dtype.
Deserializers decode an entry back to one of those forms and hand it to
`restore`, which checks it against the value being loaded and puts it in
place. `check` is the side-effect-free half that the transactional load
runs over everything first.
"""

from __future__ import annotations

from typing import Any

import keras
import ml_dtypes
import numpy as np

from ktrainer import _backend


class _StoredNone:
    """The decoded form of an entry that was saved from `None`."""

    def __repr__(self) -> str:
        return "None"


NONE = _StoredNone()

_SCALAR_TYPES = (bool, int, float, complex, np.generic)


def to_storable(key: str, value: Any, copy: bool = True) -> Any:
    """Returns the host form of `value` to store under `key`.

    With `copy=False` a tensor's array may share the tensor's memory (no
    copy on the CPU); only for writers that consume it before training
    goes on, never for arrays that are kept.
    """
    if value is None:
        return NONE
    if isinstance(value, str):
        return value
    if isinstance(value, keras.Variable):
        value = value.value
    if isinstance(value, np.ndarray):
        array = value
    elif keras.ops.is_tensor(value):
        array = keras.ops.convert_to_numpy(value) if copy else _backend.host_view(value)
    else:
        array = np.asarray(value)
    if _is_ml_dtype(array.dtype):
        return _encode_ml_dtype(array)
    if array.dtype.hasobject:
        # Object arrays could only be stored by pickling, which we never do.
        raise TypeError(
            f"value of entry {key!r} must be None, a str, a number, a numpy "
            "array, a tensor or a keras.Variable. "
            f"Received: value of type {type(value).__name__}"
        )
    return array


def _is_ml_dtype(dtype: np.dtype) -> bool:
    return getattr(ml_dtypes, dtype.name, None) is dtype.type


def _encode_ml_dtype(array: np.ndarray) -> np.ndarray:
    # bfloat16, float8 and int4 arrays (Keras's low-precision dtypes) have
    # no HDF5 or .npy type: store their bits in a record whose one field is
    # named after the dtype, which `decode_array` turns back.
    bits = np.dtype([(array.dtype.name, f"<u{array.dtype.itemsize}")])
    return np.ascontiguousarray(array).view(bits)


def decode_array(array: np.ndarray) -> np.ndarray:
    """Undoes the storage encoding of low-precision dtypes, if any."""
    names = array.dtype.names
    if names is not None and len(names) == 1:
        dtype = getattr(ml_dtypes, names[0], None)
        if isinstance(dtype, type):
            return array[names[0]].view(dtype)
    return array


def _dtype_name(dtype: Any) -> str:
    try:
        return keras.backend.standardize_dtype(dtype)
    except ValueError:  # strings and other dtypes Keras has no name for
        return str(np.dtype(dtype))


def _kind(name: str) -> str:
    if name == "bool":
        return "bool"
    if name.startswith(("int", "uint")):
        return "int"
    if name.startswith(("float", "bfloat")):
        return "float"
    return name


def _describe(stored: Any) -> str:
    if stored is NONE:
        return "None"
    if isinstance(stored, str):
        return f"the string {stored!r}"
    return f"shape {tuple(stored.shape)} {stored.dtype}"


def _int_values_fit(array: np.ndarray, target: str) -> bool:
    if array.size == 0 or np.can_cast(array.dtype, target):
        return True
    info = np.iinfo(target)
    return bool(array.min() >= info.min and array.max() <= info.max)


def _check_array(stored: Any, shape: tuple, dtype: str, allow_none: bool) -> str | None:
    expected = f"expected shape {shape} {dtype}, found {_describe(stored)}"
    if stored is NONE:
        return None if allow_none else expected
    if isinstance(stored, str) or tuple(stored.shape) != shape:
        return expected
    found = _dtype_name(stored.dtype)
    if found == dtype:
        return None
    if _kind(found) == _kind(dtype) == "int":
        if _int_values_fit(stored, dtype):
            return None
        return expected + f" whose values do not fit in {dtype}"
    return expected


def _check_scalar(stored: Any, value: Any) -> str | None:
    target = type(value)
    expected = f"expected a scalar of type {target.__name__}, found {_describe(stored)}"
    if stored is NONE:
        return None
    if isinstance(value, str):
        return None if isinstance(stored, str) else expected
    if isinstance(stored, str) or stored.size != 1:
        return expected
    if stored.dtype.kind not in "biufc":
        return expected
    # Any stored integer fits a Python int; otherwise casting must be safe.
    is_int = issubclass(target, int) and not issubclass(target, bool)
    if is_int and stored.dtype.kind in "biu":
        return None
    return None if np.can_cast(stored.dtype, target) else expected


def check(stored: Any, value: Any) -> str | None:
    """Says why `stored` cannot be loaded into `value`; `None` if it can."""
    if value is None:
        return None
    if isinstance(value, keras.Variable):
        return _check_array(stored, tuple(value.shape), _dtype_name(value.dtype), False)
    if isinstance(value, np.ndarray):
        return _check_array(stored, value.shape, _dtype_name(value.dtype), True)
    if keras.ops.is_tensor(value):
        shape = tuple(keras.ops.shape(value))
        return _check_array(stored, shape, _dtype_name(value.dtype), True)
    if isinstance(value, (str, *_SCALAR_TYPES)):
        return _check_scalar(stored, value)
    return None


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    return array if _dtype_name(array.dtype) == dtype else array.astype(dtype)


def restore(key: str, stored: Any, value: Any) -> Any:
    """Loads the decoded entry `stored` into `value` and returns the result."""
    problem = check(stored, value)
    if problem is not None:
        raise ValueError(
            f"entry {key!r} does not fit the value it loads into: {problem}"
        )
    if stored is NONE:
        return None
    if value is None or isinstance(value, str):
        return stored
    if isinstance(value, keras.Variable):
        value.assign(_cast(stored, _dtype_name(value.dtype)))
        return value
    if isinstance(value, np.ndarray):
        # Integer narrowing was range-checked above.
        np.copyto(value, stored, casting="unsafe")
        return value
    if keras.ops.is_tensor(value):
        return keras.ops.convert_to_tensor(_cast(stored, _dtype_name(value.dtype)))
    if isinstance(value, _SCALAR_TYPES):
        return type(value)(stored.reshape(())[()])
    if isinstance(value, (list, tuple)):
        return type(value)(stored.tolist())
    return type(value)(stored)
