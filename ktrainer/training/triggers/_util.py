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

    def add_stacked(self, values: Any) -> None:
        """Adds the values of a fused chunk, stacked along the first axis."""
        count = int(values.shape[0])
        if count == 0:
            return
        total = keras.ops.sum(values, axis=0)
        self._sum = total if self._count == 0 else self._sum + total
        self._count += count

    def add_observed(self, trainer: Any, key: str) -> None:
        """Adds what the latest update reported under `key`, if anything.

        After a fused update (several iterations in one call) that is every
        iteration's value, read from `trainer.fused_observation`.
        """
        fused = getattr(trainer, "fused_observation", None)
        if fused is not None and key in fused:
            self.add_stacked(fused[key])
        elif key in trainer.observation:
            self.add(trainer.observation[key])

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


def epoch_progress(updater: Any) -> tuple[float, int] | None:
    """How fast `epoch_detail` grows, for triggers that plan ahead.

    Returns `(epoch_detail gained per iteration, iterations until the
    current epoch ends)`, the second counting the update that ends it, or
    `None` when the updater cannot tell. An updater may answer itself
    through an `epoch_progress()` method; otherwise the `'main'`
    iterator's batch size, position and epoch size are read, which index
    iterators (`SerialIterator`, `MultithreadIterator`) provide.
    """
    own = getattr(updater, "epoch_progress", None)
    if callable(own):
        return own()
    get_iterator = getattr(updater, "get_iterator", None)
    if get_iterator is None:
        return None
    try:
        iterator = get_iterator("main")
    except (KeyError, RuntimeError, NotImplementedError):
        return None
    batch_size = getattr(iterator, "batch_size", None)
    position = getattr(iterator, "current_position", None)
    size = getattr(iterator, "epoch_size", None)
    if not (isinstance(batch_size, int) and isinstance(position, int)):
        return None
    if not isinstance(size, int) or size <= 0:
        return None
    return batch_size / size, max(1, math.ceil((size - position) / batch_size))


def iterations_to_reach(current: float, target: float, rate: float) -> int:
    """The fewest updates after which a count growing by `rate` may reach `target`.

    Errs on the early side (a margin absorbs float rounding), which only
    makes a fused run check a trigger sooner, never later.
    """
    margin = 1e-9 * max(1.0, abs(target))
    return max(1, math.ceil((target - current - margin) / rate))


def epoch_units_until(updater: Any, target: float) -> int | None:
    """Updates until `updater.epoch_detail` may reach `target`, or `None`."""
    progress = epoch_progress(updater)
    if progress is None:
        return None
    rate, to_epoch_end = progress
    steps = iterations_to_reach(updater.epoch_detail, target, rate)
    # Past the epoch's end the next order may have another length.
    return min(steps, to_epoch_end)
