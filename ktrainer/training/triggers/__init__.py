"""Triggers: callables of the trainer that decide when something happens.

A trigger is called with the trainer after each update and returns whether
its extension should run now (or, as a stop trigger, whether training
ends). A `(period, unit)` tuple anywhere a trigger is expected means an
`IntervalTrigger`; see `ktrainer.training.get_trigger`.
"""

from ktrainer.training.triggers.early_stopping_trigger import EarlyStoppingTrigger
from ktrainer.training.triggers.interval_trigger import IntervalTrigger
from ktrainer.training.triggers.manual_schedule_trigger import ManualScheduleTrigger
from ktrainer.training.triggers.minmax_value_trigger import (
    BestValueTrigger,
    MaxValueTrigger,
    MinValueTrigger,
)
from ktrainer.training.triggers.once_trigger import OnceTrigger
from ktrainer.training.triggers.time_trigger import TimeTrigger

__all__ = [
    "BestValueTrigger",
    "EarlyStoppingTrigger",
    "IntervalTrigger",
    "ManualScheduleTrigger",
    "MaxValueTrigger",
    "MinValueTrigger",
    "OnceTrigger",
    "TimeTrigger",
]
