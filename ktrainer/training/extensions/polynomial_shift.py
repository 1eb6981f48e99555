"""`PolynomialShift`: decay an optimizer hyperparameter polynomially to zero."""

from __future__ import annotations

from typing import Any

from ktrainer.training.extensions import _optimizer_attr as attr_util


class PolynomialShift(attr_util.TargetedShift):
    """Decays an optimizer attribute polynomially over `max_count` calls.

    After its `t`-th call the attribute is
    `init * max(1 - t / max_count, 0) ** rate` (Caffe's `poly` policy), so
    it reaches zero at the `max_count`-th call; with a `target` it stops
    there instead (from either side and for either sign). `initialize` sets
    `init` before the first update, or the last value set when training
    resumes from a snapshot.

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
        rate: the exponent of the decay.
        max_count: the number of calls over which the value decays to
            zero; positive.
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
        max_count: int,
        init: float | None = None,
        target: float | None = None,
        optimizer: Any = None,
    ) -> None:
        self._rate = attr_util.check_real(rate, "rate")
        self._max_count = attr_util.check_positive_int(max_count, "max_count")
        super().__init__(attr, init, target, optimizer)

    def _value_at(self, t: int) -> float:
        decay = max(1 - t / self._max_count, 0)
        value = self._init * decay**self._rate
        return self._clamp(value, growing=self._rate > 0, target_over_value=True)
