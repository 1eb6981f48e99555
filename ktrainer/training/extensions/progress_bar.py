"""`ProgressBar`: training progress, speed and estimated time to finish."""

from __future__ import annotations

import collections
import datetime
import math
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ktrainer import distributed
from ktrainer.training import extension
from ktrainer.training.extensions import _util

_UNITS = ("iteration", "epoch")


class ProgressBar(extension.Extension):
    """Shows how far training has got and how long it should still take.

    Every `update_interval` iterations it reports the iteration and epoch,
    the progress of the whole run and of the current epoch, the recent
    speed in iterations per second (over the last 100 updates) and the
    estimated time to finish.

    On a terminal (`out.isatty()` is true) it draws Chainer's four-line
    display and redraws it in place: two bars (`total` and `this epoch`)
    of `bar_length` characters, a status line and the speed line, with
    the cursor moved back to the top so the next drawing (or a
    `PrintReport` row) replaces it. Elsewhere (a file, a pipe, CI logs)
    it writes one plain line per update and no escape codes.

    Runs every iteration (`(1, 'iteration')`, priority `PRIORITY_READER`),
    but does nothing except an integer test between updates. Reads no
    observation and no model state.

    Args:
        training_length: the length of the run, `(length, unit)` with unit
            `'iteration'` or `'epoch'`. Defaults to `None` (taken from the
            trainer's stop trigger, which must have `get_training_length()`,
            as `IntervalTrigger` does).
        update_interval: iterations between updates of the display.
            Defaults to `100`.
        bar_length: the width of each bar in characters. Defaults to `50`.
        out: a text stream. Defaults to `sys.stdout` (looked up when
            writing, so redirections of `sys.stdout` are followed).
    """

    needs_model_state = False

    def __init__(
        self,
        training_length: Sequence[Any] | None = None,
        update_interval: int = 100,
        bar_length: int = 50,
        out: TextIO | None = None,
    ) -> None:
        if training_length is not None:
            training_length = _check_training_length(training_length)
        for name, value in (
            ("update_interval", update_interval),
            ("bar_length", bar_length),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int. Received: {name}={value!r}")
            if value <= 0:
                raise ValueError(f"{name} must be positive. Received: {name}={value!r}")
        if out is not None and not callable(getattr(out, "write", None)):
            raise TypeError(
                f"out must be a text stream with a write method. Received: out={out!r}"
            )
        self._training_length = training_length
        self._update_interval = update_interval
        self._bar_length = bar_length
        self._out = out
        self._recent_timing: collections.deque = collections.deque(maxlen=100)
        self._is_terminal: bool | None = None
        self._drawn = False

    @property
    def out(self) -> TextIO:
        """The stream written to."""
        return sys.stdout if self._out is None else self._out

    def initialize(self, trainer) -> None:
        """Resolves the training length, so a missing one fails at start."""
        self._get_training_length(trainer)

    def __call__(self, trainer) -> None:
        """Updates the display every `update_interval` iterations."""
        if trainer.updater.iteration % self._update_interval:
            return  # the cheap check first: this runs every iteration
        if not distributed.is_chief():
            return  # in a distributed run only the chief draws
        self._update(trainer)

    def iterations_until_fire(self, trainer) -> int:
        """Updates until the next redraw; a fused run needs no call before."""
        interval = self._update_interval
        return interval - trainer.updater.iteration % interval

    def finalize(self) -> None:
        """Erases the bar drawn on a terminal."""
        if self._drawn:
            out = self.out
            out.write("\033[J")
            _util.flush(out)
            self._drawn = False

    # -- drawing ---------------------------------------------------------

    def _get_training_length(self, trainer) -> tuple[float, str]:
        if self._training_length is None:
            get_length = getattr(trainer.stop_trigger, "get_training_length", None)
            if get_length is None:
                raise TypeError(
                    "training_length must be given when the stop trigger has no "
                    "get_training_length(). Received: training_length=None with "
                    f"stop_trigger={trainer.stop_trigger!r}"
                )
            self._training_length = _check_training_length(get_length())
        return self._training_length

    def _update(self, trainer) -> None:
        out = self.out
        if self._is_terminal is None:
            self._is_terminal = _util.is_terminal(out)
        status = self._status(trainer)
        if self._is_terminal:
            lines = self._bar_lines(status)
            # ESC[J clears below the cursor; ESC[nA moves it back up so the
            # next drawing overwrites this one.
            out.write("\033[J" + "".join(lines) + f"\033[{len(lines)}A")
            self._drawn = True
        else:
            out.write(self._plain_line(status))
        _util.flush(out)

    def _status(self, trainer) -> dict[str, Any]:
        updater = trainer.updater
        iteration = updater.iteration
        epoch_detail = updater.epoch_detail
        length, unit = self._get_training_length(trainer)
        done = iteration if unit == "iteration" else epoch_detail

        now = time.perf_counter()
        self._recent_timing.append((iteration, epoch_detail, now))
        old_iteration, old_epoch_detail, old_time = self._recent_timing[0]
        span = now - old_time
        if span > 0:
            iters_per_sec = (iteration - old_iteration) / span
            units_per_sec = (
                done - (old_iteration if unit == "iteration" else old_epoch_detail)
            ) / span
        else:
            iters_per_sec = units_per_sec = math.inf
        if 0 < units_per_sec < math.inf:
            eta = datetime.timedelta(seconds=max(length - done, 0) / units_per_sec)
        else:
            eta = None
        return {
            "iteration": iteration,
            "epoch": updater.epoch,
            "length": length,
            "unit": unit,
            "total_rate": min(done / length, 1.0),
            "epoch_rate": epoch_detail - int(epoch_detail),
            "iters_per_sec": iters_per_sec,
            "eta": eta,
        }

    def _bar(self, rate: float) -> str:
        marks = "#" * int(rate * self._bar_length)
        return marks + "." * (self._bar_length - len(marks))

    def _bar_lines(self, s: dict[str, Any]) -> list[str]:
        eta = "unknown" if s["eta"] is None else s["eta"]
        return [
            f"     total [{self._bar(s['total_rate'])}] {s['total_rate']:6.2%}\n",
            f"this epoch [{self._bar(s['epoch_rate'])}] {s['epoch_rate']:6.2%}\n",
            f"{s['iteration']:10} iter, {s['epoch']} epoch / "
            f"{s['length']} {s['unit']}s\n",
            f"{s['iters_per_sec']:10.5g} iters/sec. Estimated time to finish: {eta}.\n",
        ]

    def _plain_line(self, s: dict[str, Any]) -> str:
        eta = "unknown" if s["eta"] is None else s["eta"]
        return (
            f"{s['iteration']:10} iter, {s['epoch']} epoch / "
            f"{s['length']} {s['unit']}s; total {s['total_rate']:6.2%}, "
            f"this epoch {s['epoch_rate']:6.2%}; "
            f"{s['iters_per_sec']:.5g} iters/sec; "
            f"estimated time to finish: {eta}.\n"
        )


def _check_training_length(training_length: Any) -> tuple[float, str]:
    if not isinstance(training_length, (tuple, list)) or len(training_length) != 2:
        raise TypeError(
            "training_length must be a (length, unit) pair. "
            f"Received: training_length={training_length!r}"
        )
    length, unit = training_length
    if (
        unit not in _UNITS
        or isinstance(length, bool)
        or not isinstance(length, (int, float))
        or not length > 0
    ):
        raise ValueError(
            "training_length must have a positive length and unit 'iteration' "
            f"or 'epoch'. Received: training_length={training_length!r}"
        )
    return length, unit
