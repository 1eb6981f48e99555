"""`get_trigger`: turns what users pass as a trigger into a callable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TriggerLike = Callable[[Any], bool] | tuple[float, str] | list | None
"""What `Trainer.extend`, `Trainer(stop_trigger=...)` and the value
triggers accept as a trigger: a callable of the trainer returning a bool,
a `(period, unit)` pair, or `None` (never fire)."""


def _never_fire_trigger(trainer: Any) -> bool:
    return False


def get_trigger(trigger: TriggerLike) -> Callable[[Any], bool]:
    """Returns a trigger: a callable of the trainer that says when to act.

    A trigger decides, after each update, whether something should happen:
    an extension runs, or (as a stop trigger) the training loop ends. As in
    Chainer, a callable is used as is, a `(period, unit)` pair becomes an
    `IntervalTrigger`, and `None` gives a trigger that never fires.

    Args:
        trigger: a callable taking the trainer and returning a bool, a
            `(period, unit)` tuple or list with `unit` `'iteration'` or
            `'epoch'`, or `None`.

    Returns:
        The trigger callable.

    Raises:
        TypeError: if `trigger` is none of the above.
        ValueError: if the pair has a bad period or unit.
    """
    if callable(trigger):
        return trigger
    if trigger is None:
        return _never_fire_trigger
    if isinstance(trigger, (tuple, list)) and len(trigger) == 2:
        # Imported here: the triggers package itself imports this module.
        from ktrainer.training.triggers.interval_trigger import IntervalTrigger

        return IntervalTrigger(*trigger)
    raise TypeError(
        "trigger must be a callable, a (period, unit) tuple or None. "
        f"Received: trigger={trigger!r}"
    )
