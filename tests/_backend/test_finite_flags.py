"""`finite_flags`: one flag per tensor, true exactly when it holds no NaN/Inf."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ktrainer import _backend


def _flags(arrays):
    tensors = [keras.ops.convert_to_tensor(a) for a in arrays]
    return np.asarray(_backend.host_view(_backend.finite_flags(tensors))).tolist()


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("where", [0, 7, -1])
def test_one_non_finite_value_anywhere_clears_that_tensors_flag(bad, where):
    values = np.linspace(-1, 1, 12, dtype="float32").reshape(3, 4)
    broken = values.copy()
    broken.reshape(-1)[where] = bad
    assert _flags([values, broken, values[0]]) == [True, False, True]


def test_huge_finite_values_are_finite():
    # Their sum overflows: a check built on sums would call them infinite.
    huge = np.full((4,), 3e38, "float32")
    assert _flags([huge, -huge, np.array([-3e38, 3e38], "float32")]) == [True] * 3


def test_mixed_float_dtypes_and_scalars():
    arrays = [
        np.array(1e30, "float64"),  # beyond float16
        np.array([1.0, np.inf], "float16"),
        np.ones((2, 2), "float32"),
        np.array(np.nan, "float64"),
    ]
    assert _flags(arrays) == [True, False, True, False]


def test_empty_tensors_are_finite_and_no_tensors_give_no_flags():
    assert _flags([np.zeros((0, 3), "float32"), np.ones(2, "float32")]) == [True] * 2
    assert _flags([]) == []
