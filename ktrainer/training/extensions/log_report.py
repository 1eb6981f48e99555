"""`LogReport`: averages observations and writes them to a JSON log."""

from __future__ import annotations

import contextlib
import json
import os
import re
import string
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ktrainer import distributed
from ktrainer import reporter as reporter_module
from ktrainer.training import extension
from ktrainer.training._trigger_util import (
    TriggerLike,
    get_trigger,
    iterations_until_fire,
)
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
    whole `log` as a JSON list (indented by 4, as Chainer writes it) to
    `os.path.join(trainer.out, filename)`, and starts a fresh summary.

    Registered with `call_before_training=True`, it also emits an entry
    for iteration 0 before the first update (as Chainer v7 does), e.g. to
    log an `Evaluator`'s score of the untrained model.

    Writing costs the same at the millionth entry as at the first: the
    file is rewritten in full (atomically, through a temporary file) only
    the first time and whenever it is not the file this extension last
    wrote (after a resume, or when something else changed it); otherwise
    the new entry replaces the closing `]` in place, with one `write`, so
    the file stays the same JSON list. A reader that opens the file during
    that write may see it unfinished; a run killed in it leaves the file
    valid or missing its last `]`, and the next run rewrites it. A
    `filename` with fields (`'log_{iteration}'`) names a new file at each
    entry, which is written in full.

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
        self._file = _AppendedJSONList()

    def initialize(self, trainer) -> None:
        """Removes the log's own leftover temporary file, if a run left one."""
        self._file = _AppendedJSONList()
        name = self._log_name
        if name is None or any(f is not None for _, f, _, _ in _fields(name)):
            return
        leftover = re.compile(r"\." + re.escape(name) + r"\.[0-9a-f]{8}\.tmp")
        with contextlib.suppress(OSError):
            for entry in os.scandir(trainer.out):
                if leftover.fullmatch(entry.name) and entry.is_file():
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(entry.path)

    def __call__(self, trainer) -> None:
        """Adds this iteration's observation; emits an entry if the trigger fires.

        Before training (`trainer.is_before_training`, for an extension
        registered with `call_before_training=True`) it always emits, and
        the trigger is not consulted.
        """
        observation = trainer.observation
        fused = getattr(trainer, "fused_observation", None)
        if fused:
            # A fused update: every iteration's values, plus what was
            # reported once at its end (an evaluation) in the observation.
            self._summary.add_stacked(self._select(fused))
            observation = {k: v for k, v in observation.items() if k not in fused}
        self._summary.add(self._select(observation))

        if trainer.is_before_training or self._trigger(trainer):
            self._emit(trainer)

    def _select(self, observation: dict) -> dict:
        keys = self._keys
        if keys is None:
            return observation
        return {k: observation[k] for k in keys if k in observation}

    def iterations_until_fire(self, trainer) -> int | float | None:
        """Updates until the next entry: a fused run needs no call before.

        Between entries the extension only accumulates, and after a fused
        update it reads every iteration's values from
        `trainer.fused_observation`, so calling it once per fused run
        writes the same log.
        """
        return iterations_until_fire(self._trigger, trainer)

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

        if self._log_name is not None and distributed.is_chief():
            path = os.path.join(trainer.out, self._log_name.format(**stats))
            self._file.write(path, self._log)

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
        log = json.loads(_util.as_str(serializer("_log", json.dumps(self._log))))
        if log != self._log:  # loaded: the file on disk no longer follows it
            self._log = log
            self._file = _AppendedJSONList()


def _fields(name: str) -> list:
    try:
        return list(string.Formatter().parse(name))
    except ValueError:
        return []


def _indented(entry: dict[str, Any]) -> str:
    # The entry as `json.dumps(log, indent=4)` writes it inside the list.
    return "\n".join("    " + line for line in json.dumps(entry, indent=4).split("\n"))


class _AppendedJSONList:
    """Writes a growing JSON list, appending in place when it can.

    It remembers the path, size, modification time and inode of the file
    it wrote last, and the number of entries in it. When the file is
    still exactly that and one entry was added, the two closing bytes
    `\\n]` are overwritten by `,\\n<entry>\\n]`; otherwise the whole list is
    written atomically.
    """

    def __init__(self) -> None:
        self._state: tuple | None = None

    def write(self, path: str, log: list[dict[str, Any]]) -> None:
        if not self._append(path, log):
            _util.write_text_atomically(path, json.dumps(log, indent=4))
        stat = os.stat(path)
        self._state = (path, stat.st_size, stat.st_mtime_ns, stat.st_ino, len(log))

    def _append(self, path: str, log: list[dict[str, Any]]) -> bool:
        state = self._state
        if state is None or state[0] != path or state[4] != len(log) - 1 or not log:
            return False
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return False
        try:
            stat = os.fstat(fd)
            if (stat.st_size, stat.st_mtime_ns, stat.st_ino) != state[1:4]:
                return False
            end = stat.st_size - 2
            if end < 1 or os.pread(fd, 2, end) != b"\n]":
                return False
            tail = (",\n" + _indented(log[-1]) + "\n]").encode("utf-8")
            return os.pwrite(fd, tail, end) == len(tail)
        finally:
            os.close(fd)
