"""`EarlyStoppingTrigger`: stops training when a value stops improving."""

from __future__ import annotations

import numbers
import operator
import warnings
from typing import Any

from ktrainer.training._trigger_util import (
    TriggerLike,
    get_trigger,
    iterations_until_fire,
)
from ktrainer.training.triggers._util import MeanAccumulator

_MODES = ("auto", "min", "max")


class EarlyStoppingTrigger:
    """A stop trigger that fires when a monitored value stops improving.

    Give it to `Trainer(stop_trigger=...)`. Each call adds the reported
    `monitor` value to a running sum. Whenever `check_trigger` fires, the
    mean since the previous check is compared with the best mean so far:
    an improvement resets a counter, anything else increments it, and the
    trigger fires once the counter reaches `patience`. It also fires when
    `max_trigger` does, which bounds the training length.

    Values may be backend tensors: they are summed where they live and
    copied to the host once per check, not once per iteration.

    Args:
        check_trigger: when to compare: a trigger or a `(period, unit)`
            pair. Defaults to `(1, 'epoch')`.
        monitor: the observation key to watch. Defaults to `'main/loss'`.
        patience: how many checks in a row without improvement stop the
            training. Defaults to `3`.
        mode: `'min'` (lower is better), `'max'` (higher is better) or
            `'auto'` (`'max'` if `monitor` contains `'accuracy'`, else
            `'min'`). Defaults to `'auto'`.
        verbose: print the comparison direction and when it stops.
            Defaults to `False`.
        max_trigger: the longest training: a trigger or a `(period, unit)`
            pair. Defaults to `(100, 'epoch')`.
        **kwargs: `patients`, Chainer's former name of `patience`.

    Example:
        ```python
        stop = EarlyStoppingTrigger(monitor="validation/main/loss", patience=2)
        trainer = Trainer(updater, stop_trigger=stop)
        ```
    """

    def __init__(
        self,
        check_trigger: TriggerLike = (1, "epoch"),
        monitor: str = "main/loss",
        patience: int | None = None,
        mode: str = "auto",
        verbose: bool = False,
        max_trigger: TriggerLike = (100, "epoch"),
        **kwargs: Any,
    ) -> None:
        patience = _resolve_patience(patience, kwargs)
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str. Received: monitor={monitor!r}")
        if mode not in _MODES:
            raise ValueError(
                f"mode must be 'auto', 'min' or 'max'. Received: mode={mode!r}"
            )
        self.count = 0
        self.patience = patience
        self.monitor = monitor
        self.verbose = verbose
        self.already_warning = False  # Chainer compatibility
        self._max_trigger = get_trigger(max_trigger)
        self._interval_trigger = get_trigger(check_trigger)
        self._summary = MeanAccumulator()

        if mode == "max" or (mode == "auto" and "accuracy" in monitor):
            self._compare = operator.gt
            self.best = float("-inf")
        else:
            self._compare = operator.lt
            self.best = float("inf")
        if verbose:
            word = "greater" if self._compare is operator.gt else "less"
            print(f"early stopping: operator is {word}")

    def __call__(self, trainer: Any) -> bool:
        """Returns whether the training loop should stop now."""
        observation = trainer.observation
        self._summary.add_observed(trainer, self.monitor)

        if self._max_trigger(trainer):
            return True
        if not self._interval_trigger(trainer):
            return False

        if self.monitor not in observation:
            warnings.warn(
                f"{self.monitor} is not in observation; EarlyStoppingTrigger "
                "skips this check.",
                stacklevel=2,
            )
            return False

        current = self._summary.mean()
        self._summary.reset()
        if self._compare(current, self.best):
            self.best = current
            self.count = 0
        else:
            self.count += 1

        if self._stop_condition():
            if self.verbose:
                print(f"Epoch {trainer.updater.epoch}: early stopping")
            return True
        return False

    def _stop_condition(self) -> bool:
        return self.count >= self.patience

    def iterations_until_fire(self, trainer: Any) -> int | float | None:
        """The sooner of the check trigger's and the max trigger's bounds."""
        bounds = [
            iterations_until_fire(self._max_trigger, trainer),
            iterations_until_fire(self._interval_trigger, trainer),
        ]
        return None if None in bounds else min(bounds)

    def get_training_length(self) -> tuple[float, str]:
        """Returns the longest training, as `max_trigger` gives it."""
        return self._max_trigger.get_training_length()

    def serialize(self, serializer) -> None:
        """Saves or loads the counter, the best value and the inner triggers."""
        if hasattr(self._max_trigger, "serialize"):
            self._max_trigger.serialize(serializer["max_trigger"])
        if hasattr(self._interval_trigger, "serialize"):
            self._interval_trigger.serialize(serializer["interval_trigger"])
        self._summary.serialize(serializer["summary"])
        self.count = serializer("count", self.count)
        self.best = serializer("best", self.best)


def _resolve_patience(patience: Any, kwargs: dict) -> int:
    patients = kwargs.pop("patients", None)
    if kwargs:
        raise TypeError(
            "EarlyStoppingTrigger got unexpected keyword arguments. "
            f"Received: {sorted(kwargs)}"
        )
    if patients is not None:
        if patience is not None:
            raise TypeError(
                "patience and patients (its former name) were both given; "
                f"pass only patience. Received: patience={patience!r}, "
                f"patients={patients!r}"
            )
        patience = patients
    if patience is None:
        return 3
    if not isinstance(patience, numbers.Integral) or isinstance(patience, bool):
        raise TypeError(f"patience must be an int. Received: patience={patience!r}")
    if patience < 0:
        raise ValueError(
            f"patience must be non-negative. Received: patience={patience!r}"
        )
    return int(patience)
