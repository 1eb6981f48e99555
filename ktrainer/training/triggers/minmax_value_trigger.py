"""Triggers that fire when an observed value reaches a new best."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from ktrainer.training._trigger_util import (
    TriggerLike,
    get_trigger,
    iterations_until_fire,
)
from ktrainer.training.triggers._util import MeanAccumulator


class BestValueTrigger:
    """Fires when the mean of an observed value becomes the best so far.

    Every call adds `trainer.observation[key]` (when reported) to a running
    sum. When the inner `trigger` fires, the mean since the previous check
    is compared with the best mean so far through `compare`; the trigger
    fires if it is better (the first check always is), and the sum starts
    over. Use it, for instance, to snapshot the model at its best
    validation score.

    Values may be backend tensors: they are summed where they live and
    copied to the host once per check, not once per iteration.

    Args:
        key: the observation key to watch, e.g. `'validation/main/loss'`.
        compare: called as `compare(best, new)` with two floats; returns
            whether `new` is better than `best`.
        trigger: when to check: a trigger or a `(period, unit)` pair.
            Defaults to `(1, 'epoch')`.
    """

    def __init__(
        self,
        key: str,
        compare: Callable[[float, float], bool],
        trigger: TriggerLike = (1, "epoch"),
    ) -> None:
        if not isinstance(key, str):
            raise TypeError(f"key must be a str. Received: key={key!r}")
        if not callable(compare):
            raise TypeError(f"compare must be callable. Received: compare={compare!r}")
        self._key = key
        self._compare = compare
        self._interval_trigger = get_trigger(trigger)
        self._summary = MeanAccumulator()
        self._best_value: float | None = None

    @property
    def key(self) -> str:
        """The observation key this trigger watches."""
        return self._key

    @property
    def best_value(self) -> float | None:
        """The best mean seen at a check so far; `None` before the first."""
        return self._best_value

    def __call__(self, trainer: Any) -> bool:
        """Returns whether this check found a new best value."""
        observation = trainer.observation
        self._summary.add_observed(trainer, self._key)
        if not self._interval_trigger(trainer):
            return False

        if not len(self._summary):
            raise KeyError(
                f"{type(self).__name__} watches {self._key!r}, but nothing "
                "was reported under that key since the previous check; "
                f"reported keys: {sorted(observation)}"
            )
        value = self._summary.mean()
        self._summary.reset()
        if self._best_value is None or self._compare(self._best_value, value):
            self._best_value = value
            return True
        return False

    def iterations_until_fire(self, trainer: Any) -> int | float | None:
        """As the inner check trigger's: it can fire only at a check.

        Skipped calls lose no value: after a fused update the values of
        every iteration are read from `trainer.fused_observation`.
        """
        return iterations_until_fire(self._interval_trigger, trainer)

    def serialize(self, serializer) -> None:
        """Saves or loads the inner trigger, the running sum and the best."""
        if hasattr(self._interval_trigger, "serialize"):
            self._interval_trigger.serialize(serializer["interval_trigger"])
        self._summary.serialize(serializer["summary"])
        # A snapshot holds no None: a flag says whether a best exists.
        has_best = serializer("has_best_value", self._best_value is not None)
        best = serializer(
            "best_value",
            0.0 if self._best_value is None else float(self._best_value),
        )
        self._best_value = best if has_best else None


class MaxValueTrigger(BestValueTrigger):
    """Fires when the mean of an observed value reaches a new maximum.

    For example, `MaxValueTrigger('validation/main/accuracy')` as the
    trigger of a snapshot keeps the most accurate model.

    Args:
        key: the observation key to watch.
        trigger: when to check: a trigger or a `(period, unit)` pair.
            Defaults to `(1, 'epoch')`.
    """

    def __init__(self, key: str, trigger: TriggerLike = (1, "epoch")) -> None:
        super().__init__(key, operator.lt, trigger)


class MinValueTrigger(BestValueTrigger):
    """Fires when the mean of an observed value reaches a new minimum.

    For example, `MinValueTrigger('validation/main/loss')` as the trigger
    of a snapshot keeps the model with the lowest validation loss.

    Args:
        key: the observation key to watch.
        trigger: when to check: a trigger or a `(period, unit)` pair.
            Defaults to `(1, 'epoch')`.
    """

    def __init__(self, key: str, trigger: TriggerLike = (1, "epoch")) -> None:
        super().__init__(key, operator.gt, trigger)
