"""`IntervalTrigger`: fires every `period` iterations or epochs."""

from __future__ import annotations

import math
import warnings
from typing import Any

from ktrainer.training.triggers._util import (
    check_positive_number,
    check_unit,
    epoch_units_until,
)


class IntervalTrigger:
    """Fires once every `period` iterations or epochs.

    An `'iteration'` is one update; an `'epoch'` is one sweep over the
    training data, as counted by the updater's `epoch_detail`, so epoch
    periods may be fractional (`(0.5, 'epoch')`) and epochs need not hold
    a whole number of iterations. The trigger fires on the first call at
    which the count crosses a multiple of `period` since its previous
    call; it remembers where that previous call was, so it still fires
    (once) when it is not called every iteration, and never fires at
    iteration 0, before any update.

    A `(period, unit)` tuple given wherever a trigger is expected becomes
    this trigger.

    Args:
        period: the interval length; a positive number (it should be an
            integer for `'iteration'`).
        unit: `'iteration'` or `'epoch'`.

    Example:
        ```python
        trainer.extend(extensions.LogReport(), trigger=IntervalTrigger(1, "epoch"))
        ```
    """

    def __init__(self, period: float, unit: str) -> None:
        check_unit(unit)
        check_positive_number("period", period)
        self.period = period
        self.unit = unit
        # Where the previous call was; -1 means "unknown" (an old snapshot).
        self._previous_iteration: int = 0
        self._previous_epoch_detail: float = 0.0
        # Chainer compatibility: kept up to date, read by nobody here.
        self.count = 0

    def __call__(self, trainer: Any) -> bool:
        """Returns whether a multiple of `period` was crossed since last call."""
        updater = trainer.updater
        iteration = updater.iteration
        # Read once: every trigger is called every iteration.
        epoch_detail = getattr(updater, "epoch_detail", None)
        if self.unit == "epoch":
            if epoch_detail is None:
                epoch_detail = updater.epoch_detail  # the updater's own error
            previous = self._previous_epoch_detail
            if previous < 0:
                previous = updater.previous_epoch_detail
                if previous is None:
                    previous = epoch_detail
            self.count = epoch_detail // self.period
            fire = previous // self.period != epoch_detail // self.period
        else:
            previous = self._previous_iteration
            if previous < 0:
                previous = iteration - 1
            fire = previous // self.period != iteration // self.period

        self._previous_iteration = iteration
        if epoch_detail is not None:
            self._previous_epoch_detail = epoch_detail
        return fire

    def iterations_until_fire(self, trainer: Any) -> int | None:
        """The updates that may run before this trigger can next fire.

        A fused run (`Trainer(max_fused_steps=...)`) runs that many
        iterations before calling the trigger again; since the trigger
        remembers its previous call, skipping calls in between is exact.
        `None` when the epoch geometry is unknown.
        """
        updater = trainer.updater
        if self.unit == "epoch":
            current = updater.epoch_detail
            previous = self._previous_epoch_detail
            if previous < 0 or previous // self.period != current // self.period:
                return 1
            target = (current // self.period + 1) * self.period
            return epoch_units_until(updater, target)
        current = updater.iteration
        previous = self._previous_iteration
        if previous < 0 or previous // self.period != current // self.period:
            return 1
        target = (current // self.period + 1) * self.period
        # A fractional period fires on the first whole iteration past it.
        return max(1, math.ceil(target) - current)

    def serialize(self, serializer) -> None:
        """Saves or loads where the previous call was."""
        try:
            self._previous_iteration = serializer(
                "previous_iteration", self._previous_iteration
            )
        except KeyError:
            warnings.warn(
                "IntervalTrigger: the snapshot has no 'previous_iteration'; "
                "it is guessed as the current iteration minus one, so the "
                "trigger may misfire if it is not called every iteration.",
                stacklevel=2,
            )
            self._previous_iteration = -1
        try:
            self._previous_epoch_detail = serializer(
                "previous_epoch_detail", self._previous_epoch_detail
            )
        except KeyError:
            warnings.warn(
                "IntervalTrigger: the snapshot has no 'previous_epoch_detail'; "
                "the updater's previous_epoch_detail is used instead, so the "
                "trigger may misfire if it is not called every iteration.",
                stacklevel=2,
            )
            self._previous_epoch_detail = -1.0

    def get_training_length(self) -> tuple[float, str]:
        """Returns `(period, unit)`: the training length as a stop trigger."""
        return (self.period, self.unit)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.period}, '{self.unit}')"
