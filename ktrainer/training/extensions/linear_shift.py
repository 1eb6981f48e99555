"""`LinearShift`: move an optimizer hyperparameter linearly between two values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ktrainer.training.extensions import _optimizer_attr as attr_util


def _check_pair(value: Any, argument: str) -> tuple[float, float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise TypeError(
            f"{argument} must be a pair (first, last). Received: {argument}={value!r}"
        )
    first = attr_util.check_real(value[0], f"{argument}[0]")
    last = attr_util.check_real(value[1], f"{argument}[1]")
    return first, last


class LinearShift(attr_util.HyperparameterShift):
    """Shifts an optimizer attribute linearly within a range of calls.

    With `value_range=(v1, v2)` and `time_range=(t1, t2)`, the attribute
    is `v1` up to the `t1`-th call, moves linearly to reach `v2` at the
    `t2`-th call, and stays `v2` after it. A typical use is a warm-up of
    the learning rate or of a momentum. `initialize` sets the value for
    the current call count before the first update, and the last value set
    when training resumes from a snapshot.

    The attribute must be one the optimizer keeps in a variable, as Keras
    does for `learning_rate`: the value is assigned into that variable, so
    the next compiled step uses it on every backend. A learning rate given
    as a `LearningRateSchedule`, or a plain Python attribute such as SGD's
    `momentum`, makes `initialize` raise a `TypeError`.

    Default trigger: `(1, 'iteration')`; priority: `PRIORITY_READER`.
    State kept by a snapshot: `_t`, `_last_value`.

    Args:
        attr: name of the optimizer attribute to shift; `'lr'` means
            `'learning_rate'`.
        value_range: the first and the last values `(v1, v2)`.
        time_range: the call counts `(t1, t2)` between which the value
            moves; `t1 <= t2`.
        optimizer: the Keras optimizer to adjust. Defaults to `None` (the
            updater's `'main'` optimizer).
    """

    def __init__(
        self,
        attr: str,
        value_range: tuple[float, float],
        time_range: tuple[int, int],
        optimizer: Any = None,
    ) -> None:
        super().__init__(attr, optimizer)
        self._value_range = _check_pair(value_range, "value_range")
        t1, t2 = _check_pair(time_range, "time_range")
        if t1 > t2:
            raise ValueError(
                "time_range must be (t1, t2) with t1 <= t2. "
                f"Received: time_range={time_range!r}"
            )
        self._time_range = (t1, t2)

    def initialize(self, trainer) -> None:
        """Sets the value for the current call count, or the last one set."""
        optimizer = self._prepare(trainer)
        if self._last_value is not None:  # resumed from a snapshot
            value = self._last_value
        else:
            value = self._compute_next_value()
        self._update_value(optimizer, value)

    def __call__(self, trainer) -> None:
        self._t += 1
        self._update_value(self._get_optimizer(trainer), self._compute_next_value())

    def serialize(self, serializer) -> None:
        """Saves or loads `_t` and `_last_value`."""
        self._t = serializer("_t", self._t)
        self._last_value = attr_util.serialize_optional(
            serializer, "_last_value", self._last_value
        )

    def _compute_next_value(self) -> float:
        t1, t2 = self._time_range
        v1, v2 = self._value_range
        if self._t <= t1:
            return v1
        if self._t >= t2:
            return v2
        rate = (self._t - t1) / (t2 - t1)
        return v1 + rate * (v2 - v1)
