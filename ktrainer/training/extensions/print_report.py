"""`PrintReport`: prints `LogReport` entries as an aligned table."""

from __future__ import annotations

import numbers
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ktrainer import distributed
from ktrainer.training import extension
from ktrainer.training.extensions import _util
from ktrainer.training.extensions.log_report import LogReport


class PrintReport(extension.Extension):
    """Prints chosen entries of a `LogReport`'s log as a table, row by row.

    On its first call it prints a header: the entry names, each padded to
    a column of `max(len(entry), 10)` characters, columns separated by two
    spaces. On every call it then prints one row per log entry not printed
    yet: numbers in `'g'` format (so `0.123457`, `1.23457e+06`), left
    aligned in the column and followed by two spaces; an entry missing
    from that log entry leaves its column blank. Before each row on a
    terminal it clears the screen below the cursor (`ESC[J`), which
    removes a `ProgressBar` drawn there; into files and pipes it writes
    plain text only. At the first row it prints, it warns once about
    entries that row lacks (a misspelt `'main/los'`, or a key that nobody
    reports), naming the keys that were reported.

    Runs every iteration by default (`(1, 'iteration')`) with priority
    `PRIORITY_READER`; register it after the `LogReport` it reads, so that
    a new entry is printed in the iteration it is made. A snapshot keeps
    how many entries were printed, so a resumed run prints only new rows
    (after printing the header again).

    Args:
        entries: the log keys to print, e.g.
            `['epoch', 'main/loss', 'validation/main/loss']`.
        log_report: the name of the `LogReport` registered with the
            trainer, or a `LogReport` that this extension owns and calls
            itself every time it is called. Defaults to `'LogReport'`.
        out: a text stream. Defaults to `sys.stdout` (looked up when
            writing, so redirections of `sys.stdout` are followed).
    """

    needs_model_state = False

    def __init__(
        self,
        entries: Sequence[str],
        log_report: str | LogReport = "LogReport",
        out: TextIO | None = None,
    ) -> None:
        if isinstance(entries, str) or not all(isinstance(e, str) for e in entries):
            raise TypeError(
                "entries must be a list of observation keys (str). "
                f"Received: entries={entries!r}"
            )
        if not isinstance(log_report, (str, LogReport)):
            raise TypeError(
                "log_report must be the name of a LogReport extension or a "
                f"LogReport. Received: log_report={log_report!r}"
            )
        if out is not None and not callable(getattr(out, "write", None)):
            raise TypeError(
                f"out must be a text stream with a write method. Received: out={out!r}"
            )
        self._entries = list(entries)
        self._log_report = log_report
        self._out = out
        self._log_len = 0  # the number of log entries printed so far
        self._checked_keys = False  # whether the entries were checked (once)

        widths = [max(10, len(entry)) for entry in self._entries]
        self._header: str | None = (
            "  ".join(entry.ljust(w) for entry, w in zip(self._entries, widths)) + "\n"
        )
        self._columns = list(zip(self._entries, widths))

    @property
    def out(self) -> TextIO:
        """The stream written to."""
        return sys.stdout if self._out is None else self._out

    def __call__(self, trainer) -> None:
        """Prints the header once, then any log entries not printed yet."""
        if not distributed.is_chief():
            return  # in a distributed run only the chief prints
        if self._header is not None:
            self.out.write(self._header)
            self._header = None

        log_report = self._log_report
        if isinstance(log_report, str):
            log_report = trainer.get_extension(log_report)
        else:
            log_report(trainer)
        log = log_report.log
        if len(log) > self._log_len:
            self._print_rows(log)

    def iterations_until_fire(self, trainer) -> int | float | None:
        """Updates until its `LogReport` next writes an entry.

        Rows appear only when the log grows, so a fused run needs no call
        in between (the header is printed at the first iteration, as
        unfused).
        """
        if self._header is not None:
            return 1
        log_report = self._log_report
        if isinstance(log_report, str):
            log_report = trainer.get_extension(log_report)
        bound = getattr(log_report, "iterations_until_fire", None)
        return None if bound is None else bound(trainer)

    def _print_rows(self, log: list[dict[str, Any]]) -> None:
        out = self.out
        # ESC[J erases a progress bar drawn below the cursor; only a
        # terminal understands it, so files and pipes get plain rows.
        clear = "\033[J" if _util.is_terminal(out) else ""
        if not self._checked_keys:
            self._checked_keys = True
            _util.warn_missing_keys(
                "PrintReport entries", self._entries, log[self._log_len]
            )
        while self._log_len < len(log):
            out.write(clear + self._format_row(log[self._log_len]))
            self._log_len += 1
        _util.flush(out)

    def _format_row(self, entry: dict[str, Any]) -> str:
        cells = []
        for key, width in self._columns:
            if key not in entry:
                cells.append(" " * (width + 2))
                continue
            value = entry[key]
            if isinstance(value, numbers.Real):
                cells.append(f"{value:<{width}g}  ")
            else:
                cells.append(f"{value!s:<{width}}  ")
        return "".join(cells) + "\n"

    def serialize(self, serializer) -> None:
        """Saves or loads the number of printed entries (and an owned `LogReport`)."""
        if isinstance(self._log_report, LogReport):
            self._log_report.serialize(serializer["_log_report"])
        self._log_len = int(serializer("_log_len", self._log_len))
