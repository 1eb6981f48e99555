"""`MicroAverage`: the ratio of two sums of reported values."""

from __future__ import annotations

from typing import Any

import keras

from ktrainer import reporter
from ktrainer.training import extension
from ktrainer.training._trigger_util import (
    TriggerLike,
    get_trigger,
    iterations_until_fire,
)


def _to_float(value: Any) -> float:
    return float(keras.ops.convert_to_numpy(value))


class MicroAverage(extension.Extension):
    """Reports the micro-average `sum(numerator) / sum(denominator)`.

    Each iteration in which both `numerator_key` and `denominator_key` are
    observed, the two values are added to running sums; when `trigger`
    fires, the extension reports `sum(n_i) / sum(d_i)` under `result_key`
    and restarts both sums. With `n_i` the number of correct predictions
    and `d_i` the number of examples of batch `i`, this is the accuracy
    over all examples, which differs from the mean of per-batch accuracies
    (the macro-average) when batches differ in size.

    The sums stay on the device (no host copy per iteration); only the
    final ratio is copied to the host, as a Python float.

    Default trigger of the extension: `(1, 'iteration')`; priority:
    `PRIORITY_EDITOR`, so it runs after writers such as `Evaluator` and
    before readers such as `LogReport`. State kept by a snapshot: the two
    running sums.

    Example:

    ```python
    # In a loss_func: report({"correct": n_correct, "total": n}, model)
    trainer.extend(MicroAverage("main/correct", "main/total", "main/accuracy"))
    ```

    Args:
        numerator_key: the observation key of the numerator values.
        denominator_key: the observation key of the denominator values.
        result_key: the key the ratio is reported under.
        trigger: when to report the ratio and restart the sums; this is
            distinct from the extension's own trigger. Defaults to
            `(1, 'epoch')`.
    """

    priority = extension.PRIORITY_EDITOR
    model_state = "none"  # it reads observations only

    def __init__(
        self,
        numerator_key: str,
        denominator_key: str,
        result_key: str,
        trigger: TriggerLike = (1, "epoch"),
    ) -> None:
        for argument, key in (
            ("numerator_key", numerator_key),
            ("denominator_key", denominator_key),
            ("result_key", result_key),
        ):
            if not isinstance(key, str):
                raise TypeError(
                    f"{argument} must be a str. Received: {argument}={key!r}"
                )
        self._trigger = get_trigger(trigger)
        self._numerator_key = numerator_key
        self._denominator_key = denominator_key
        self._result_key = result_key
        self._numerator: Any = 0
        self._denominator: Any = 0

    def iterations_until_fire(self, trainer) -> int | float | None:
        """Updates until the next report: a fused run needs no call before.

        After a fused update it adds every iteration's values, read from
        `trainer.fused_observation`.
        """
        return iterations_until_fire(self._trigger, trainer)

    def __call__(self, trainer) -> None:
        observation = trainer.observation
        fused = getattr(trainer, "fused_observation", None)
        if fused and self._numerator_key in fused and self._denominator_key in fused:
            observation = {
                self._numerator_key: keras.ops.sum(fused[self._numerator_key]),
                self._denominator_key: keras.ops.sum(fused[self._denominator_key]),
            }
        if not (
            self._numerator_key in observation and self._denominator_key in observation
        ):
            return
        # keras.ops.add keeps tensors on their device and promotes mixed
        # integer and float values the same way on every backend.
        self._numerator = keras.ops.add(
            self._numerator, observation[self._numerator_key]
        )
        self._denominator = keras.ops.add(
            self._denominator, observation[self._denominator_key]
        )
        if self._trigger(trainer):
            result = _to_float(self._numerator) / _to_float(self._denominator)
            self._numerator = 0
            self._denominator = 0
            reporter.report({self._result_key: result})

    def serialize(self, serializer) -> None:
        """Saves or loads the running sums and the trigger's state."""
        if hasattr(self._trigger, "serialize"):
            self._trigger.serialize(serializer["_trigger"])
        self._numerator = serializer("_numerator", _to_float(self._numerator))
        self._denominator = serializer("_denominator", _to_float(self._denominator))
