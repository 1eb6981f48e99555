"""`host_view`: the no-copy host array that HDF5 writes read tensors through."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ktrainer import _backend
from ktrainer.serializers import DictionarySerializer
from ktrainer.serializers._values import to_storable


@pytest.mark.parametrize("shape", [(3, 4), ()])
@pytest.mark.parametrize("dtype", ["float32", "int32", "bfloat16", "bool"])
def test_host_view_keeps_values_shape_and_dtype(dtype, shape):
    # Scalars of ml_dtypes types (bfloat16) need a copy on tensorflow, and
    # `keras.ops.convert_to_numpy` itself fails there, so compare by hand.
    value = np.arange(12).reshape(shape) % 2 if shape else 1  # valid as bool too
    variable = keras.Variable(value, dtype=dtype, trainable=False)
    view = _backend.host_view(variable.value)
    assert isinstance(view, np.ndarray)
    assert view.shape == shape
    assert view.dtype.name == dtype
    np.testing.assert_array_equal(view.astype("float64"), np.asarray(value, "float64"))


def test_host_view_of_a_trainable_variable():
    # torch parameters require grad; numpy() alone would refuse them.
    variable = keras.Variable(np.ones((2, 2), "float32"), trainable=True)
    np.testing.assert_array_equal(_backend.host_view(variable.value), np.ones((2, 2)))


def test_kept_arrays_are_copies_not_views():
    # A dictionary snapshot outlives the step: later assignments must not
    # show through it.
    variable = keras.Variable(np.zeros(3, "float32"), name="v")
    stored = to_storable("v", variable)
    target: dict = {}
    DictionarySerializer(target)("v", variable)
    variable.assign(np.ones(3, "float32"))
    np.testing.assert_array_equal(stored, np.zeros(3))
    np.testing.assert_array_equal(target["v"], np.zeros(3))
