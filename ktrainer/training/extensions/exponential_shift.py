"""`ExponentialShift`: multiply an optimizer hyperparameter by a rate per call."""

from __future__ import annotations

from typing import Any

from ktrainer.training.extensions import _optimizer_attr as attr_util


class ExponentialShift(attr_util.TargetedShift):
    """Shifts an optimizer attribute exponentially, e.g. to decay the learning rate.

    After its `t`-th call the attribute is `init * rate ** t`, clamped at
    `target` once it gets there (from either side and for either sign).
    `initialize` sets the attribute to `init` before the first update, or
    back to the last value set when training resumes from a snapshot.

    The attribute must be one the optimizer keeps in a variable, as Keras
    does for `learning_rate`: the value is assigned into that variable, so
    the next compiled step uses it on every backend. A learning rate given
    as a `LearningRateSchedule`, or a plain Python attribute such as SGD's
    `momentum`, makes `initialize` raise a `TypeError`.

    Default trigger: `(1, 'iteration')`; priority: `PRIORITY_READER`.
    State kept by a snapshot: `_t`, `_last_value` (and an `init` read from
    the optimizer).

    Example:

    ```python
    trainer.extend(ExponentialShift("learning_rate", 0.5), trigger=(1, "epoch"))
    ```

    Args:
        attr: name of the optimizer attribute to shift; `'lr'` means
            `'learning_rate'`.
        rate: the factor applied at each call; must be non-negative.
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
        rate: float,
        init: float | None = None,
        target: float | None = None,
        optimizer: Any = None,
    ) -> None:
        rate = attr_util.check_real(rate, "rate")
        if rate < 0:
            raise ValueError(f"rate must be non-negative. Received: rate={rate!r}")
        self._rate = rate
        super().__init__(attr, init, target, optimizer)

    def _value_at(self, t: int) -> float:
        value = self._init * self._rate**t
        return self._clamp(value, growing=self._rate > 1)
