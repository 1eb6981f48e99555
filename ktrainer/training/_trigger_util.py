"""`get_trigger`: turns what users pass as a trigger into a callable."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

TriggerLike = Callable[[Any], bool] | tuple[float, str] | list | None
"""What `Trainer.extend`, `Trainer(stop_trigger=...)` and the value
triggers accept as a trigger: a callable of the trainer returning a bool,
a `(period, unit)` pair, or `None` (never fire)."""


def _never_fire_trigger(trainer: Any) -> bool:
    return False


_never_fire_trigger.iterations_until_fire = lambda trainer: math.inf


def iterations_until_fire(trigger: Any, trainer: Any) -> int | float | None:
    """How many more updates may run before `trigger` can next fire.

    Returns `n >= 1` such that `trigger` would not fire when called after
    any of the next `n - 1` updates (it may fire after the `n`-th),
    `math.inf` if it never fires again, or `None` if it cannot tell (a
    plain function, a `TimeTrigger`). A trainer that fuses iterations
    (`max_fused_steps`) runs at most `n` of them before calling the
    trigger again. A trigger takes part by defining a method
    `iterations_until_fire(trainer)` with this meaning; by doing so it
    promises that skipping its calls on those iterations changes nothing.
    """
    method = getattr(trigger, "iterations_until_fire", None)
    if method is None:
        return None
    bound = method(trainer)
    if bound is None:
        return None
    return max(1, bound)


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
