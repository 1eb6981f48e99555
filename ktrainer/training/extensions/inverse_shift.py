"""`InverseShift`: decay an optimizer hyperparameter as an inverse power."""

from __future__ import annotations

from typing import Any

from ktrainer.training.extensions import _optimizer_attr as attr_util


class InverseShift(attr_util.HyperparameterShift):
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
        super().__init__(attr, optimizer)
        gamma = attr_util.check_real(gamma, "gamma")
        if gamma < 0:
            raise ValueError(f"gamma must be non-negative. Received: gamma={gamma!r}")
        self._gamma = gamma
        self._power = attr_util.check_real(power, "power")
        self._init_arg = attr_util.check_real(init, "init", allow_none=True)
        self._init = self._init_arg
        self._target = attr_util.check_real(target, "target", allow_none=True)

    def initialize(self, trainer) -> None:
        """Sets the initial value, or the last one after a resume."""
        optimizer = self._prepare(trainer)
        if self._init is None:
            self._init = attr_util.read_attr(optimizer, self._attr)
        if self._last_value is not None:  # resumed from a snapshot
            self._update_value(optimizer, self._last_value)
        else:
            self._update_value(optimizer, self._init)

    def __call__(self, trainer) -> None:
        self._t += 1
        value = self._init * (1 + self._gamma * self._t) ** (-self._power)
        target = self._target
        if target is not None:
            # Clamps at `target` for values of either sign, as Chainer does.
            if self._power < 0:
                if attr_util.ratio(value, target) > 1:
                    value = target
            elif attr_util.ratio(value, target) < 1:
                value = target
        self._update_value(self._get_optimizer(trainer), value)

    def serialize(self, serializer) -> None:
        """Saves or loads `_t`, `_last_value` and `init`."""
        self._t = serializer("_t", self._t)
        self._last_value = attr_util.serialize_optional(
            serializer, "_last_value", self._last_value
        )
        init = attr_util.serialize_optional(serializer, "_init", self._init)
        if self._init_arg is None:  # an explicit init wins, as in Chainer
            self._init = init
