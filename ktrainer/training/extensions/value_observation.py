"""`observe_value` and `observe_lr`: put a computed value into the observation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from ktrainer.training import extension


def observe_value(
    observation_key: str, target_func: Callable[[Any], Any]
) -> Callable[[Any], None]:
    """Returns an extension that records `target_func(trainer)` as an observation.

    Each time it fires, the extension writes the value under
    `observation_key` into `trainer.observation`, where `LogReport` and
    `PrintReport` pick it up like any reported value.

    Default trigger: `(1, 'epoch')`; priority: `PRIORITY_WRITER`, so
    readers of the same iteration see the value. It declares
    `model_state='read'`, since `target_func` may read model or
    optimizer variables (it must not assign them).

    Its default name is `'_observe_value'`, as in Chainer.

    Args:
        observation_key: the key to record the value under.
        target_func: a function of the trainer returning the value.

    Returns:
        The extension, a function of the trainer.
    """
    if not isinstance(observation_key, str):
        raise TypeError(
            "observation_key must be a str. "
            f"Received: observation_key={observation_key!r}"
        )
    if not callable(target_func):
        raise TypeError(
            "target_func must be a callable taking the trainer. "
            f"Received: target_func={target_func!r}"
        )

    @extension.make_extension(
        trigger=(1, "epoch"),
        priority=extension.PRIORITY_WRITER,
        model_state="read",
    )
    def _observe_value(trainer) -> None:  # Chainer's name for the extension
        trainer.observation[observation_key] = target_func(trainer)

    return _observe_value


def observe_lr(
    optimizer_name: str = "main", observation_key: str = "lr"
) -> Callable[[Any], None]:
    """Returns an extension that records an optimizer's current learning rate.

    The value is the optimizer's `learning_rate` at the time the extension
    fires (a schedule's value for the current iteration, if the learning
    rate is a `LearningRateSchedule`). It is recorded as a device scalar,
    copied on the device so that later shifts do not change it; nothing
    waits for the device: the value reaches the host only when whoever
    reads it (e.g. `LogReport`) does.

    Default trigger: `(1, 'epoch')`; priority: `PRIORITY_WRITER`. It
    declares `model_state='read'`: the learning rate lives in an
    optimizer variable.

    Args:
        optimizer_name: the updater's name of the optimizer.
            Defaults to `'main'`.
        observation_key: the key to record the value under.
            Defaults to `'lr'`.

    Returns:
        The extension, a function of the trainer.
    """
    if not isinstance(optimizer_name, str):
        raise TypeError(
            f"optimizer_name must be a str. Received: optimizer_name={optimizer_name!r}"
        )

    def learning_rate(trainer) -> Any:
        optimizer = trainer.updater.get_optimizer(optimizer_name)
        value = optimizer.learning_rate
        if isinstance(value, keras.Variable):
            # A variable changes in place; the observation keeps this value.
            value = keras.ops.copy(value.value)
        return value

    return observe_value(observation_key, learning_rate)
