"""`TimeTrigger`: fires every `period` seconds of training time."""

from __future__ import annotations

from typing import Any

from ktrainer.training.triggers._util import check_positive_number


class TimeTrigger:
    """Fires once every `period` seconds of `trainer.elapsed_time`.

    The schedule is fixed: it fires on the first call after `period`,
    `2 * period`, ... seconds, whatever the iteration count, so a slow
    iteration delays a firing without shifting the ones after it. The
    elapsed time includes the time before a resume, and the next firing
    time is part of the snapshot.

    Args:
        period: the interval in seconds; a positive number.
    """

    def __init__(self, period: float) -> None:
        check_positive_number("period", period)
        self._period = period
        self._next_time = period

    @property
    def period(self) -> float:
        """The interval in seconds."""
        return self._period

    def __call__(self, trainer: Any) -> bool:
        """Returns whether the next firing time has passed."""
        if self._next_time < trainer.elapsed_time:
            self._next_time += self._period
            return True
        return False

    def serialize(self, serializer) -> None:
        """Saves or loads the next firing time."""
        self._next_time = serializer("next_time", self._next_time)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._period})"
