"""`InverseShift`: decay an optimizer hyperparameter as an inverse power."""

from __future__ import annotations

from typing import Any

from ktrainer.training.extensions import _optimizer_attr as attr_util


class InverseShift(attr_util.TargetedShift):
    """Shifts an optimizer attribute as `init * (1 + gamma * t) ** -power`.

    This is Caffe's `inv` learning-rate policy: after its `t`-th call the
    attribute is `init * (1 + gamma * t) ** (-power)`, clamped at `target`
    once it gets there (from either side and for either sign).
    `initialize` sets `init` before the first update, or the last value set
    when training resumes from a snapshot.

    The attribute must be one the optimizer keeps in a variable, as Keras
    does for `learning_rate`: the value is assigned into that variable, so
    the next compiled step uses it on every backend. A learning rate given
    as a `LearningRateSchedule`, or a plain Python attribute such as SGD's
    `momentum`, makes `initialize` raise a `TypeError`.

    Default trigger: `(1, 'iteration')`; priority: `PRIORITY_READER`.
    State kept by a snapshot: `_t`, `_last_value` (and an `init` read from
    the optimizer).

    Args:
        attr: name of the optimizer attribute to shift; `'lr'` means
            `'learning_rate'`.
        gamma: the scale of the call count in the formula; non-negative.
        power: the exponent in the formula.
        init: the initial value. Defaults to `None` (the attribute's value
            when training starts).
        target: the value at which the shift stops. Defaults to `None`
            (no limit).
        optimizer: the Keras optimizer to adjust. Defaults to `None` (the
            updater's `'main'` optimizer).
    """

    def __init__(
        self,
        attr: str,
        gamma: float,
        power: float,
        init: float | None = None,
        target: float | None = None,
        optimizer: Any = None,
    ) -> None:
        gamma = attr_util.check_real(gamma, "gamma")
        if gamma < 0:
            raise ValueError(f"gamma must be non-negative. Received: gamma={gamma!r}")
        self._gamma = gamma
        self._power = attr_util.check_real(power, "power")
        super().__init__(attr, init, target, optimizer)

    def _value_at(self, t: int) -> float:
        value = self._init * (1 + self._gamma * t) ** (-self._power)
        return self._clamp(value, growing=self._power < 0)
