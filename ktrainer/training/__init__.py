"""The training loop: trainer, updaters, extensions and triggers."""

from ktrainer.training import extensions, triggers, updaters
from ktrainer.training._trigger_util import get_trigger
from ktrainer.training.extension import (
    PRIORITY_EDITOR,
    PRIORITY_READER,
    PRIORITY_WRITER,
    Extension,
    make_extension,
)
from ktrainer.training.trainer import Trainer
from ktrainer.training.updater import Updater
from ktrainer.training.updaters import StandardUpdater

__all__ = [
    "PRIORITY_EDITOR",
    "PRIORITY_READER",
    "PRIORITY_WRITER",
    "Extension",
    "StandardUpdater",
    "Trainer",
    "Updater",
    "extensions",
    "get_trigger",
    "make_extension",
    "triggers",
    "updaters",
]
