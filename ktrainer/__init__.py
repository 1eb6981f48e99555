"""ktrainer: Chainer's training loop, extensions and triggers for Keras 3.

A `Trainer` runs an `Updater` and a set of extensions, each fired by a
trigger in priority order; a `Reporter` collects observations; snapshots
are plain HDF5 files that resume training exactly, under any backend.
"""

from ktrainer import (
    callbacks,
    dataset,
    distributed,
    iterators,
    reporter,
    serializers,
    testing,
    training,
)
from ktrainer._version import __version__
from ktrainer.reporter import Reporter, get_current_reporter, report, report_scope
from ktrainer.training import StandardUpdater, Trainer

__all__ = [
    "Reporter",
    "StandardUpdater",
    "Trainer",
    "__version__",
    "callbacks",
    "dataset",
    "distributed",
    "get_current_reporter",
    "iterators",
    "report",
    "report_scope",
    "reporter",
    "serializers",
    "testing",
    "training",
]
