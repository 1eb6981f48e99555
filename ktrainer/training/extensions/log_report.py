"""`LogReport`: averages observations and writes them to a JSON log."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ktrainer import reporter as reporter_module
from ktrainer.training import extension
from ktrainer.training._trigger_util import TriggerLike, get_trigger
from ktrainer.training.extensions import _util


class LogReport(extension.Extension):
    """Averages the observations over an interval and logs the means as JSON.

    The extension itself runs every iteration (its default trigger is
    `(1, 'iteration')`, its priority `PRIORITY_READER`), adding the
    iteration's `trainer.observation` to a `DictSummary` (which keeps
    device values without waiting for them). Whenever its own `trigger`
    fires (every epoch by default), it computes the means, adds

    - `'epoch'` and `'iteration'`: the updater's counts at that moment;
    - `'elapsed_time'`: `trainer.elapsed_time`, in seconds;

    passes the dict to `postprocess`, appends it to `log`, writes the
    whole `log` as a JSON list (indented by 4) to
    `os.path.join(trainer.out, filename)`, and starts a fresh summary.
    The file is replaced atomically, so a reader never sees half a log.

    `PrintReport` and `PlotReport` read `log`. A snapshot keeps the log,
    the pending summary and the trigger's state.

    Args:
        keys: the observation keys to average; other keys are ignored.
            Defaults to `None` (every scalar observation).
        trigger: when to emit an entry: a trigger or a `(period, unit)`
            tuple. Defaults to `(1, 'epoch')`.
        postprocess: called with each entry (a dict) before it is logged;
            it may change the dict in place. Defaults to `None`.
        filename: the log file's name under `trainer.out`. It may be a
            format string filled from the entry, e.g. `'log_{iteration}'`.
            `None` writes no file. Defaults to `'log'`.
        log_name: deprecated alias of `filename` (Chainer's older name).
    """

    needs_model_state = False

    def __init__(
        self,
        keys: Iterable[str] | None = None,
        trigger: TriggerLike = (1, "epoch"),
        postprocess: Callable[[dict[str, Any]], Any] | None = None,
        filename: str | None = "log",
        **kwargs: Any,
    ) -> None:
        if "log_name" in kwargs:
            # Chainer compatibility
            log_name = kwargs.pop("log_name")
            if filename != "log":
                raise TypeError(
                    "pass the log file's name as filename or as log_name, not "
                    f"both. Received: filename={filename!r}, log_name={log_name!r}"
                )
            warnings.warn(
                "LogReport's log_name argument is deprecated; use filename.",
                DeprecationWarning,
                stacklevel=2,
            )
            filename = log_name
        if kwargs:
            raise TypeError(
                "LogReport got unexpected keyword arguments. "
                f"Received: {sorted(kwargs)}"
            )
        if keys is not None:
            if isinstance(keys, str):
                raise TypeError(
                    "keys must be an iterable of observation keys, not a single "
                    f"str. Received: keys={keys!r}"
                )
            keys = tuple(keys)
        if postprocess is not None and not callable(postprocess):
            raise TypeError(
                f"postprocess must be callable or None. Received: {postprocess!r}"
            )
        if filename is not None and not isinstance(filename, str):
            raise TypeError(
                f"filename must be a str or None. Received: filename={filename!r}"
            )
        self._keys = keys
        self._trigger = get_trigger(trigger)
        self._postprocess = postprocess
        self._log_name = filename
        self._log: list[dict[str, Any]] = []
        self._summary = reporter_module.DictSummary()

    def __call__(self, trainer) -> None:
        """Adds this iteration's observation; emits an entry if the trigger fires."""
        observation = trainer.observation
        keys = self._keys
        if keys is None:
            self._summary.add(observation)
        else:
            self._summary.add({k: observation[k] for k in keys if k in observation})

        if self._trigger(trainer):
            self._emit(trainer)

    def _emit(self, trainer) -> None:
        stats = {
            name: float(value) for name, value in self._summary.compute_mean().items()
        }
        updater = trainer.updater
        stats["epoch"] = updater.epoch
        stats["iteration"] = updater.iteration
        stats["elapsed_time"] = trainer.elapsed_time
        if self._postprocess is not None:
            self._postprocess(stats)
        self._log.append(stats)

        if self._log_name is not None:
            path = os.path.join(trainer.out, self._log_name.format(**stats))
            _util.write_text_atomically(path, json.dumps(self._log, indent=4))

        self._summary = reporter_module.DictSummary()

    @property
    def log(self) -> list[dict[str, Any]]:
        """The entries emitted so far, oldest first."""
        return self._log

    def serialize(self, serializer) -> None:
        """Saves or loads the trigger, the pending summary and the log.

        The log is stored as one JSON string, `_log`.
        """
        if hasattr(self._trigger, "serialize"):
            self._trigger.serialize(serializer["_trigger"])
        try:
            self._summary.serialize(serializer["_summary"])
        except KeyError:
            warnings.warn(
                "LogReport: the snapshot has no '_summary'; the statistics "
                "accumulated since the last log entry are lost.",
                stacklevel=2,
            )
        self._log = json.loads(_util.as_str(serializer("_log", json.dumps(self._log))))
