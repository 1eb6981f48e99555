"""`ManualScheduleTrigger`: fires at given iterations or epochs."""

from __future__ import annotations

import math
import warnings
from typing import Any

from ktrainer.training.triggers._util import (
    check_unit,
    epoch_units_until,
    is_number,
)


def _check_points(points: Any) -> list:
    listed = list(points) if isinstance(points, (list, tuple)) else [points]
    if not listed:
        raise ValueError(
            "points must be a number or a non-empty list of numbers. "
            f"Received: points={points!r}"
        )
    for point in listed:
        if not is_number(point):
            raise TypeError(
                "points must be a number or a list of numbers. "
                f"Received: points={points!r}"
            )
        if point < 0:
            raise ValueError(
                f"points must be non-negative. Received: points={points!r}"
            )
    return listed


class ManualScheduleTrigger:
    """Fires at each of the given points, counted in iterations or epochs.

    Use it for one-off events at known times, such as dropping the learning
    rate at epochs 30 and 60. A point fires on the first call at which the
    count reaches or passes it; epoch points may be fractional. Once the
    last point has fired, `finished` becomes true, and the trainer then
    skips the extension's `initialize` on a resume.

    Args:
        points: the point, or a list of points, at which to fire (should be
            integers for `'iteration'`).
        unit: `'iteration'` or `'epoch'`.

    Attributes:
        finished: whether the trigger will never fire again.
    """

    def __init__(self, points: float | list[float], unit: str) -> None:
        check_unit(unit)
        self.points = _check_points(points)
        self.unit = unit
        self.finished = False
        self._previous_iteration: int = 0
        self._previous_epoch_detail: float = 0.0
        # Set when an old snapshot lacked `finished`: recomputed next call.
        self._finished_is_tmp = False

    def __call__(self, trainer: Any) -> bool:
        """Returns whether a point was reached since the previous call."""
        updater = trainer.updater
        if self.unit == "epoch":
            current = updater.epoch_detail
            previous = self._previous_epoch_detail
            if previous < 0:
                previous = updater.previous_epoch_detail
                if previous is None:
                    previous = current
        else:
            current = updater.iteration
            previous = self._previous_iteration
            if previous < 0:
                previous = current - 1

        fire = any(previous < point <= current for point in self.points)
        last = max(self.points)
        if self._finished_is_tmp:
            self._finished_is_tmp = False
            if current >= last:
                self.finished = True
        if fire and current >= last:
            self.finished = True

        self._previous_iteration = updater.iteration
        if hasattr(updater, "epoch_detail"):
            self._previous_epoch_detail = updater.epoch_detail
        return fire

    def iterations_until_fire(self, trainer: Any) -> int | float | None:
        """The updates that may run before this trigger can next fire.

        `math.inf` once every point has passed; `None` when the epoch
        geometry is unknown. See `IntervalTrigger.iterations_until_fire`.
        """
        updater = trainer.updater
        if self.unit == "epoch":
            current = updater.epoch_detail
            previous = self._previous_epoch_detail
        else:
            current = updater.iteration
            previous = self._previous_iteration
        if previous < 0 or self._finished_is_tmp:
            return 1
        if any(previous < point <= current for point in self.points):
            return 1
        ahead = [point for point in self.points if point > current]
        if not ahead:
            return math.inf
        if self.unit == "epoch":
            return epoch_units_until(updater, min(ahead))
        return max(1, math.ceil(min(ahead)) - current)

    def serialize(self, serializer) -> None:
        """Saves or loads where the previous call was and `finished`."""
        try:
            self._previous_iteration = serializer(
                "previous_iteration", self._previous_iteration
            )
        except KeyError:
            warnings.warn(
                "ManualScheduleTrigger: the snapshot has no "
                "'previous_iteration'; it is guessed as the current iteration "
                "minus one, so the trigger may misfire if it is not called "
                "every iteration.",
                stacklevel=2,
            )
            self._previous_iteration = -1
        try:
            self._previous_epoch_detail = serializer(
                "previous_epoch_detail", self._previous_epoch_detail
            )
        except KeyError:
            warnings.warn(
                "ManualScheduleTrigger: the snapshot has no "
                "'previous_epoch_detail'; the updater's previous_epoch_detail "
                "is used instead, so the trigger may misfire if it is not "
                "called every iteration.",
                stacklevel=2,
            )
            self._previous_epoch_detail = -1.0
        try:
            self.finished = serializer("finished", self.finished)
        except KeyError:
            warnings.warn(
                "ManualScheduleTrigger: the snapshot has no 'finished' flag; "
                "it is reset to False (so the extension is initialized on "
                "resume) and recomputed on the next call.",
                stacklevel=2,
            )
            self.finished = False
            self._finished_is_tmp = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.points}, '{self.unit}')"
