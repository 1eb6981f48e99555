"""Planning fused runs: how many iterations may run before anything must act.

With `Trainer(max_fused_steps=N)` the trainer asks, before each update,
how many iterations may pass before the stop trigger or any extension
could next act, and runs that many (at most `N`) in one compiled call of
the updater. Every trigger and extension then runs at exactly the
iterations it would run at unfused.

An extension registered to run every iteration takes part by defining
`iterations_until_fire(trainer)`: it then promises that being called only
at those points (reading the skipped iterations' observations from
`trainer.fused_observation`) gives the same results. Any other extension
is bounded by its trigger's own `iterations_until_fire`; a trigger that
cannot tell (a plain function, `TimeTrigger`) keeps the run unfused.
"""

from __future__ import annotations

import math
from typing import Any

from ktrainer.training._trigger_util import iterations_until_fire


def runs_every_iteration(trigger: Any) -> bool:
    """Whether `trigger` fires after every update: `(1, 'iteration')`."""
    from ktrainer.training.triggers.interval_trigger import IntervalTrigger

    return (
        type(trigger) is IntervalTrigger
        and trigger.unit == "iteration"
        and trigger.period == 1
    )


def entry_bound(trigger: Any, extension: Any, trainer: Any) -> int | float | None:
    """Updates that may run before this extension must be called again."""
    own = getattr(extension, "iterations_until_fire", None)
    if own is not None and runs_every_iteration(trigger):
        bound = own(trainer)
        return None if bound is None else max(1, bound)
    return iterations_until_fire(trigger, trainer)


def plan_steps(trainer: Any, entries, cap: int) -> int:
    """The number of iterations (1 to `cap`) to run in the next call.

    Args:
        trainer: the trainer, as triggers see it.
        entries: `(trigger, extension)` pairs of the registered extensions.
        cap: the most iterations one call may run (`max_fused_steps`).
    """
    if cap <= 1:
        return 1
    bound: int | float = cap
    stop = iterations_until_fire(trainer.stop_trigger, trainer)
    if stop is None:
        return 1
    bound = min(bound, stop)
    for trigger, extension in entries:
        if bound <= 1:
            return 1
        entry = entry_bound(trigger, extension, trainer)
        if entry is None:
            return 1
        bound = min(bound, entry)
    steps = cap if math.isinf(bound) else max(1, int(bound))
    if steps < cap:
        # A power of two: each distinct length is a program to compile,
        # so lengths are kept to log2(cap) + 1 of them (plus `cap`).
        steps = 1 << (steps.bit_length() - 1)
    return steps


class FusedValues:
    """What a fused update reports under one key: every iteration's value.

    `stacked` holds one value per iteration along its first axis; `last`
    is the last iteration's value, computed by the compiled call itself
    (slicing it out afterwards would cost a device dispatch per key).
    """

    __slots__ = ("last", "stacked")

    def __init__(self, stacked: Any, last: Any) -> None:
        self.stacked = stacked
        self.last = last


def split_fused(observation: dict, steps: int) -> tuple[dict, dict | None]:
    """Splits a fused call's stacked observation into (last, stacked).

    Values reported by a fused update carry a leading axis of length
    `steps`; the last iteration's values are what extensions that fire at
    the end of the chunk read as `trainer.observation`, exactly as they
    would unfused. Values without that axis (reported once) pass as they
    are and are not part of the stacked dict.
    """
    if steps <= 1:
        return observation, None
    last, stacked = {}, {}
    for key, value in observation.items():
        if isinstance(value, FusedValues):
            stacked[key], last[key] = value.stacked, value.last
            continue
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) >= 1 and shape[0] == steps:
            stacked[key] = value
            last[key] = value[-1]
        else:
            last[key] = value
    return last, stacked
