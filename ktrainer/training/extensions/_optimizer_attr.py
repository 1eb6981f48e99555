"""Reading and writing a hyperparameter of a Keras optimizer.

The shift extensions change an optimizer attribute such as `learning_rate`
while training runs. Keras keeps the learning rate in a variable that the
compiled train step reads on every call, so assigning into that variable
takes effect at the next update on every backend. This module holds what
the shifts share: argument checks, the lookup of the optimizer, and the
get and set of the attribute.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import keras

from ktrainer.training.extension import Extension

# Chainer compatibility: Chainer optimizers call the learning rate `lr`.
_ATTR_ALIASES = {"lr": "learning_rate"}


def check_attr(attr: Any) -> str:
    """Returns the Keras name of the attribute `attr` names."""
    if not isinstance(attr, str) or not attr:
        raise TypeError(
            "attr must be the name of an optimizer attribute, a non-empty str. "
            f"Received: attr={attr!r}"
        )
    return _ATTR_ALIASES.get(attr, attr)


def check_real(value: Any, argument: str, *, allow_none: bool = False) -> Any:
    """Returns `value` as a float after checking that it is a real number."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        expected = "a real number or None" if allow_none else "a real number"
        raise TypeError(
            f"{argument} must be {expected}. Received: {argument}={value!r}"
        )
    if not math.isfinite(value):
        raise ValueError(f"{argument} must be finite. Received: {argument}={value!r}")
    return float(value)


def check_positive_int(value: Any, argument: str) -> int:
    """Returns `value` after checking that it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{argument} must be a positive int. Received: {argument}={value!r}"
        )
    if value <= 0:
        raise ValueError(
            f"{argument} must be a positive int. Received: {argument}={value!r}"
        )
    return int(value)


def check_optimizer(optimizer: Any) -> Any:
    """Returns `optimizer` after checking that it is a Keras optimizer or None."""
    if optimizer is not None and not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            "optimizer must be a keras.optimizers.Optimizer or None (the "
            "updater's 'main' optimizer). "
            f"Received: optimizer={optimizer!r}"
        )
    return optimizer


def ratio(numerator: float, denominator: float) -> float:
    """`numerator / denominator` with IEEE semantics for a zero denominator.

    Chainer compares `value / target` with 1 to clamp at a target of either
    sign; a zero in the denominator gives an infinity (or NaN) here instead
    of a `ZeroDivisionError`.
    """
    if denominator == 0:
        if numerator == 0:
            return math.nan
        return math.copysign(math.inf, numerator) * math.copysign(1.0, denominator)
    return numerator / denominator


def serialize_optional(serializer, key: str, value: float | None) -> float | None:
    """Saves or loads a float that may be `None`; returns a float or `None`.

    Loading into `None` gives the stored array as is, so it is turned back
    into a Python float here (Chainer does the same with `.item()`).
    """
    stored = serializer(key, value)
    if stored is None:
        return None
    return float(keras.ops.convert_to_numpy(stored))


class HyperparameterShift(Extension):
    """Base of the extensions that change an optimizer attribute over time.

    Subclasses keep Chainer's state names: `_t` counts the calls and
    `_last_value` is the value set last. Values the extension read from
    the optimizer (an `init` of `None`) are serialized as well, because a
    snapshot restores the optimizer's learning-rate variable to its shifted
    value, which must not be mistaken for the initial one after a resume.
    """

    # It assigns an optimizer variable and never reads one while training
    # (`initialize` does, and is always synced for): no sync per call.
    model_state = "write"

    def __init__(self, attr: str, optimizer: Any) -> None:
        self._attr = check_attr(attr)
        self._optimizer = check_optimizer(optimizer)
        self._t = 0
        self._last_value: float | None = None

    def _get_optimizer(self, trainer) -> Any:
        if self._optimizer is not None:
            return self._optimizer
        return trainer.updater.get_optimizer("main")

    def _prepare(self, trainer) -> Any:
        """Returns the optimizer after checking that the attribute is settable."""
        optimizer = self._get_optimizer(trainer)
        check_settable(optimizer, self._attr, type(self).__name__)
        return optimizer

    def _update_value(self, optimizer, value: float) -> None:
        write_attr(optimizer, self._attr, value)
        self._last_value = value


class TargetedShift(HyperparameterShift):
    """A shift to `init` times a factor of the call count, stopped at `target`.

    The common part of `ExponentialShift`, `InverseShift`,
    `PolynomialShift` and `StepShift`: `initialize` sets `init` (read from
    the optimizer when not given) or, after a resume, the last value set;
    each call sets `_value_at(t)` for the new call count `t`; `serialize`
    keeps `_t`, `_last_value` and `init`.
    """

    def __init__(
        self, attr: str, init: float | None, target: float | None, optimizer: Any
    ) -> None:
        super().__init__(attr, optimizer)
        self._init_arg = check_real(init, "init", allow_none=True)
        self._init = self._init_arg
        self._target = check_real(target, "target", allow_none=True)

    def initialize(self, trainer) -> None:
        """Sets the initial value, or the last one after a resume."""
        optimizer = self._prepare(trainer)
        if self._init is None:
            self._init = read_attr(optimizer, self._attr)
        if self._last_value is not None:  # resumed from a snapshot
            self._update_value(optimizer, self._last_value)
        else:
            self._update_value(optimizer, self._init)

    def __call__(self, trainer) -> None:
        self._t += 1
        self._update_value(self._get_optimizer(trainer), self._value_at(self._t))

    def _value_at(self, t: int) -> float:
        """The value after the `t`-th call, clamped at the target."""
        raise NotImplementedError

    def _clamp(self, value: float, growing: bool, target_over_value=False) -> float:
        """`target` once `value` passed it in the direction it moves.

        Chainer compares a ratio of the two with 1 rather than the values,
        so that a target of either sign works; `target_over_value` picks
        the ratio's orientation (`PolynomialShift` uses `target / value`).
        """
        target = self._target
        if target is None:
            return value
        r = ratio(target, value) if target_over_value else ratio(value, target)
        passed = r > 1 if growing else r < 1
        return target if passed else value

    def serialize(self, serializer) -> None:
        """Saves or loads `_t`, `_last_value` and `init`."""
        self._t = serializer("_t", self._t)
        self._last_value = serialize_optional(
            serializer, "_last_value", self._last_value
        )
        init = serialize_optional(serializer, "_init", self._init)
        if self._init_arg is None:  # an explicit init wins, as in Chainer
            self._init = init


def _describe(optimizer) -> str:
    name = getattr(optimizer, "name", None)
    kind = type(optimizer).__name__
    return f"{kind} optimizer {name!r}" if name else f"{kind} optimizer"


def check_settable(optimizer, attr: str, owner: str) -> None:
    """Raises unless `attr` of `optimizer` is one of the optimizer's variables.

    Only a value the optimizer keeps in one of its own variables reaches
    every update on every backend: jax and tensorflow compile the train
    step and capture plain Python attributes (e.g. SGD's `momentum`) as
    constants when they trace it, so setting those would silently change
    nothing there while changing training under torch. A learning rate
    given as a `LearningRateSchedule` or a callable is computed from the
    iteration count and has no variable to assign into.
    """
    if not hasattr(optimizer, attr):
        raise AttributeError(
            f"{owner} shifts attribute {attr!r}, which the "
            f"{_describe(optimizer)} does not have. Received: attr={attr!r}"
        )
    current = getattr(optimizer, attr)
    if isinstance(current, keras.Variable) and any(
        current is variable for variable in optimizer.variables
    ):
        return
    if attr == "learning_rate":
        raise TypeError(
            f"{owner} cannot set 'learning_rate' of the {_describe(optimizer)}: "
            "it is a LearningRateSchedule or a callable, which Keras computes "
            "from the iteration count and does not let anyone set. Create the "
            "optimizer with a float learning rate instead, e.g. "
            f"keras.optimizers.{type(optimizer).__name__}(learning_rate=0.01)."
        )
    raise TypeError(
        f"{owner} can shift only an attribute that the optimizer keeps in one "
        f"of its variables, such as 'learning_rate'; {attr!r} of the "
        f"{_describe(optimizer)} is a {type(current).__name__}, which a train "
        "step compiled by jax or tensorflow reads once, when it is traced, so "
        f"new values would never reach the updates. Received: attr={attr!r}"
    )


def read_attr(optimizer, attr: str) -> float:
    """Returns the current value of `attr` as a Python float (a host copy)."""
    current = getattr(optimizer, attr)
    return float(keras.ops.convert_to_numpy(current))


def write_attr(optimizer, attr: str, value: float) -> None:
    """Assigns `value` into the variable that holds `attr`.

    Assigning (rather than rebinding the attribute) keeps the variable that
    the compiled step and the snapshots refer to.
    """
    getattr(optimizer, attr).assign(value)
