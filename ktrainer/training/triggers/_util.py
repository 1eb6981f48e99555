"""Helpers shared by the triggers: argument checks and a running mean."""

from __future__ import annotations

import math
import numbers
from typing import Any

import keras
import numpy as np

UNITS = ("iteration", "epoch")


def check_unit(unit: Any) -> str:
    if unit not in UNITS:
        raise ValueError(
            f"unit must be 'iteration' or 'epoch'. Received: unit={unit!r}"
        )
    return unit


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive_number(name: str, value: Any) -> None:
    if not is_number(value):
        raise TypeError(
            f"{name} must be a positive number. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(
            f"{name} must be a positive finite number. Received: {name}={value!r}"
        )


def to_float(value: Any) -> float:
    """Copies a scalar (Python, NumPy or backend tensor) to a Python float."""
    if isinstance(value, (numbers.Number, np.ndarray, np.generic)):
        return float(value)
    return float(keras.ops.convert_to_numpy(value))


class MeanAccumulator:
    """The running mean of one observed value between two check points.

    Values stay where they are (a backend tensor stays on its device): the
    sum is built with `+`, which dispatches asynchronously, and the one
    device-to-host copy happens in `mean()`, at the check point only.
    """

    def __init__(self) -> None:
        self._sum: Any = 0.0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, value: Any) -> None:
        self._sum = value if self._count == 0 else self._sum + value
        self._count += 1

    def mean(self) -> float:
        if not self._count:
            raise RuntimeError(
                "mean() needs at least one value; add() was never called."
            )
        return to_float(self._sum) / self._count

    def reset(self) -> None:
        self._sum = 0.0
        self._count = 0

    def serialize(self, serializer) -> None:
        # The sum is saved as a host float; adding a tensor to it later
        # gives a tensor again, so the hot path stays on the device.
        self._sum = serializer("sum", to_float(self._sum))
        self._count = serializer("count", self._count)
