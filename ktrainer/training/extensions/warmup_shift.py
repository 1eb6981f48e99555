"""`WarmupShift`: raise (or lower) an optimizer hyperparameter to its value."""

from __future__ import annotations

from typing import Any

from ktrainer.training.extensions import _optimizer_attr as attr_util


class WarmupShift(attr_util.HyperparameterShift):
    """Moves an optimizer attribute evenly from `warmup_start` to `init`.

    The attribute is `warmup_start` when training starts and, after the
    `t`-th call, `(t * init + (warmup_iter - t) * warmup_start) / warmup_iter`
    until it reaches `init` at the `warmup_iter`-th call. Later calls leave
    the attribute alone, so another extension may take over. `initialize`
    sets the value for the current call count, which also restores it when
    training resumes from a snapshot in the middle of the warm-up.

    The attribute must be one the optimizer keeps in a variable, as Keras
    does for `learning_rate`: the value is assigned into that variable, so
    the next compiled step uses it on every backend. A learning rate given
    as a `LearningRateSchedule`, or a plain Python attribute such as SGD's
    `momentum`, makes `initialize` raise a `TypeError`.

    Default trigger: `(1, 'iteration')`; priority: `PRIORITY_READER`.
    State kept by a snapshot: `_t` (and the values read from the
    optimizer for a `warmup_start` or `init` of `None`).

    Args:
        attr: name of the optimizer attribute to shift; `'lr'` means
            `'learning_rate'`.
        warmup_start: the value when training starts, or `None` for the
            attribute's value then.
        warmup_iter: the number of calls the warm-up takes; positive.
        init: the value after the warm-up. Defaults to `None` (the
            attribute's value when training starts, i.e. the one the
            optimizer was created with).
        optimizer: the Keras optimizer to adjust. Defaults to `None` (the
            updater's `'main'` optimizer).
    """

    def __init__(
        self,
        attr: str,
        warmup_start: float | None,
        warmup_iter: int,
        init: float | None = None,
        optimizer: Any = None,
    ) -> None:
        super().__init__(attr, optimizer)
        self._warmup_start_arg = attr_util.check_real(
            warmup_start, "warmup_start", allow_none=True
        )
        self._warmup_start = self._warmup_start_arg
        self._warmup_iter = attr_util.check_positive_int(warmup_iter, "warmup_iter")
        self._init_arg = attr_util.check_real(init, "init", allow_none=True)
        self._init = self._init_arg

    def initialize(self, trainer) -> None:
        """Sets the value for the current call count during the warm-up."""
        optimizer = self._prepare(trainer)
        if self._init is None or self._warmup_start is None:
            current = attr_util.read_attr(optimizer, self._attr)
            if self._init is None:
                self._init = current
            if self._warmup_start is None:
                self._warmup_start = current
        if self._t <= self._warmup_iter:
            attr_util.write_attr(optimizer, self._attr, self._compute_value())

    def __call__(self, trainer) -> None:
        self._t += 1
        if self._t <= self._warmup_iter:
            optimizer = self._get_optimizer(trainer)
            attr_util.write_attr(optimizer, self._attr, self._compute_value())

    def serialize(self, serializer) -> None:
        """Saves or loads `_t` and the values read from the optimizer."""
        self._t = serializer("_t", self._t)
        warmup_start = attr_util.serialize_optional(
            serializer, "_warmup_start", self._warmup_start
        )
        init = attr_util.serialize_optional(serializer, "_init", self._init)
        # Values given explicitly win over stored ones, as in Chainer.
        if self._warmup_start_arg is None:
            self._warmup_start = warmup_start
        if self._init_arg is None:
            self._init = init

    def _compute_value(self) -> float:
        t, n = self._t, self._warmup_iter
        if t == 0:
            return self._warmup_start
        return (t * self._init + (n - t) * self._warmup_start) / n
