"""`MultistepShift`: multiply an optimizer hyperparameter at given call counts."""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from typing import Any

from ktrainer.training.extensions import _optimizer_attr as attr_util


def _check_step_value(step_value: Any) -> tuple[int, ...]:
    if not isinstance(step_value, Sequence) or isinstance(step_value, str):
        raise TypeError(
            "step_value must be a sequence of call counts. "
            f"Received: step_value={step_value!r}"
        )
    for count in step_value:
        if isinstance(count, bool) or not isinstance(count, numbers.Integral):
            raise TypeError(
                f"step_value must contain ints. Received: step_value={step_value!r}"
            )
    if any(a > b for a, b in itertools.pairwise(step_value)):
        raise ValueError(
            "step_value must be in ascending order. "
            f"Received: step_value={step_value!r}"
        )
    return tuple(int(count) for count in step_value)


class MultistepShift(attr_util.HyperparameterShift):
    """Multiplies an optimizer attribute by `gamma` at each of given call counts.

    With `init=x`, `gamma=g` and `step_value=(s1, s2, s3)`, the attribute
    is `x` before the `s1`-th call, `x * g` from the `s1`-th call, `x * g**2`
    from the `s2`-th and `x * g**3` from the `s3`-th on (Caffe's
    `multistep` policy). As in Chainer, each call advances by at most one
    step. `initialize` sets the value of the current step before the first
    update, also when training resumes from a snapshot.

    The attribute must be one the optimizer keeps in a variable, as Keras
    does for `learning_rate`: the value is assigned into that variable, so
    the next compiled step uses it on every backend. A learning rate given
    as a `LearningRateSchedule`, or a plain Python attribute such as SGD's
    `momentum`, makes `initialize` raise a `TypeError`.

    Default trigger: `(1, 'iteration')`; priority: `PRIORITY_READER`.
    State kept by a snapshot: `_t`, `_current_step` (and an `init` read
    from the optimizer).

    Args:
        attr: name of the optimizer attribute to shift; `'lr'` means
            `'learning_rate'`.
        gamma: the factor applied at each step.
        step_value: the call counts at which each step starts, ascending.
        init: the initial value, or `None` for the attribute's value when
            training starts.
        optimizer: the Keras optimizer to adjust. Defaults to `None` (the
            updater's `'main'` optimizer).
    """

    def __init__(
        self,
        attr: str,
        gamma: float,
        step_value: Sequence[int],
        init: float | None,
        optimizer: Any = None,
    ) -> None:
        super().__init__(attr, optimizer)
        self._gamma = attr_util.check_real(gamma, "gamma")
        self._step_value = _check_step_value(step_value)
        self._init_arg = attr_util.check_real(init, "init", allow_none=True)
        self._init = self._init_arg
        self._current_step = 0

    def initialize(self, trainer) -> None:
        """Sets the value of the current step (the initial one at first)."""
        optimizer = self._prepare(trainer)
        if self._init is None:
            self._init = attr_util.read_attr(optimizer, self._attr)
        self._update_value(optimizer, self._compute_value())

    def __call__(self, trainer) -> None:
        self._t += 1
        steps = self._step_value
        if self._current_step < len(steps) and self._t >= steps[self._current_step]:
            self._current_step += 1
        self._update_value(self._get_optimizer(trainer), self._compute_value())

    def serialize(self, serializer) -> None:
        """Saves or loads `_t`, `_current_step` and `init`."""
        self._t = serializer("_t", self._t)
        self._current_step = serializer("_current_step", self._current_step)
        init = attr_util.serialize_optional(serializer, "_init", self._init)
        if self._init_arg is None:  # an explicit init wins, as in Chainer
            self._init = init

    def _compute_value(self) -> float:
        return self._init * self._gamma**self._current_step
