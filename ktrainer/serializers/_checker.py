"""Transactional loading: check everything first, then load.

`checked_load` runs the target's serialization twice. The first pass uses
a `CheckingDeserializer`, which reads every entry the target asks for,
compares it with the current value, records each problem and returns the
current value untouched; only when no problem was found does the second
pass, with the real deserializer, change anything.
"""

from __future__ import annotations

from typing import Any

import keras

from ktrainer.serializers._base import Deserializer
from ktrainer.serializers._reader import EntryDeserializer, MissingEntryError
from ktrainer.serializers._values import check

_SHOWN = 10


class _Report:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.visited: set[str] = set()
        self.n_missing = 0
        self.n_unreadable = 0

    def missing(self, key: str) -> None:
        self.n_missing += 1
        self.problems.append(f"{key!r}: missing from the file")

    def unreadable(self, key: str, error: Exception) -> None:
        self.n_unreadable += 1
        self.problems.append(
            f"{key!r}: cannot be read ({type(error).__name__}: {error})"
        )


class CheckingDeserializer(Deserializer):
    """Validates entries against current values without changing anything.

    Every call returns the value it was given. A missing entry of a Keras
    variable is recorded and skipped so that all of a model's problems are
    listed at once; any other missing entry raises `MissingEntryError`, as
    the real load would, so `serialize` methods that catch it behave the
    same in both passes.
    """

    def __init__(self, reader: EntryDeserializer, report: _Report) -> None:
        self.reader = reader
        self.report = report

    @property
    def path(self) -> str:
        return self.reader.path

    @property
    def strict(self) -> bool:
        return self.reader.strict

    def _keys(self):
        return self.reader._keys()

    def __getitem__(self, key: str) -> CheckingDeserializer:
        return CheckingDeserializer(self.reader[key], self.report)

    def __call__(self, key: str, value: Any) -> Any:
        reader, report = self.reader, self.report
        full_key = reader.path + key.lstrip("/")
        report.visited.add(full_key)
        if reader._ignored(full_key):
            return value
        try:
            present = reader._has(full_key)
            stored = reader._read_for_check(full_key) if present else None
            if not present and reader._written(full_key):
                raise LookupError(
                    "the file's checksum list names it, but the entry cannot be "
                    "found, so the file is damaged"
                )
        except Exception as error:  # a damaged file: report it, load nothing
            report.unreadable(full_key, error)
            return value
        if not present:
            if not reader.strict:
                return value
            if isinstance(value, keras.Variable):
                report.missing(full_key)
                return value
            raise MissingEntryError(full_key)
        problem = check(stored, value)
        if problem is not None:
            report.problems.append(f"{full_key!r}: {problem}")
        return value


def _unvisited(reader: EntryDeserializer, report: _Report) -> list[str]:
    try:
        keys = list(reader._keys())
    except Exception:  # listing is only for the hint
        return []
    return [k for k in keys if k not in report.visited and not reader._ignored(k)]


def _top_names(keys, prefix: str) -> list[str]:
    tops: dict[str, None] = {}
    for key in keys:
        if key.startswith(prefix):
            tops[key[len(prefix) :].split("/", 1)[0]] = None
    return list(tops)


def _describe_file(tops: list[str], stored: list[str]) -> str:
    if {"layers", "vars"} & set(tops) and any("/vars/" in k for k in stored):
        return (
            "it looks like a Keras weights file (model.save_weights); load it "
            "with model.load_weights(path)"
        )
    if tops == ["updater"] or {"updater", "extensions"} <= set(tops):
        return "it looks like a trainer snapshot; load it into a Trainer"
    return (
        "if it is a model's or an optimizer's save_hdf5, load it into that "
        "object, e.g. load_hdf5(path, trainer.updater.get_model())"
    )


def _foreign_file_message(
    obj: Any, reader: EntryDeserializer, report: _Report, source: str
) -> str | None:
    """Says what a file holds when none of it is what `obj` reads."""
    try:
        stored = list(reader._keys())
    except Exception:  # listing is only for the message
        return None
    prefix = reader.path
    wanted = _top_names(report.visited, prefix)
    found = _top_names(stored, prefix)
    if not wanted or set(wanted) & set(found):
        return None
    keras_weights = {"layers", "vars"} & set(found)
    if not keras_weights and ("updater" not in wanted or "updater" in found):
        # Another object's state, or names that differ: the entry list and
        # the naming hint of the general message say more.
        return None
    what = type(obj).__name__
    holds = (
        f"entries under {', '.join(repr(t + '/') for t in found[:5])}"
        if found
        else "no entries"
    )
    if prefix:
        holds += f" below {prefix!r}"
    return (
        f"{source} holds no state of the {what} it is loaded into: the file "
        f"holds {holds} ({len(stored)} in all), but a {what} reads entries "
        f"under {', '.join(repr(t + '/') for t in wanted)}; "
        f"{_describe_file(found, stored)}. Nothing was loaded."
    )


def _message(
    obj: Any, reader: EntryDeserializer, report: _Report, source: str, kind: str
) -> str:
    problems = report.problems
    if report.n_missing and not report.n_unreadable:
        foreign = _foreign_file_message(obj, reader, report, source)
        if foreign is not None:
            return foreign
    if report.n_unreadable:
        head = f"{source} is not a readable {kind} snapshot: it is damaged or truncated"
    else:
        head = f"{source} does not match the {type(obj).__name__} it is loaded into"
    lines = [
        f"{head}; {len(problems)} problem(s), so nothing was loaded:",
        *(f"  - {p}" for p in problems[:_SHOWN]),
    ]
    if len(problems) > _SHOWN:
        lines.append(f"  ... and {len(problems) - _SHOWN} more.")
    unvisited = _unvisited(reader, report) if report.n_missing else []
    if unvisited:
        examples = ", ".join(repr(k) for k in unvisited[:3])
        lines.append(
            f"The file holds {len(unvisited)} entries nothing asked for, e.g. "
            f"{examples}. Variable paths come from layer and model names, and "
            "Keras numbers auto-generated names per process ('dense_3' instead "
            "of 'dense'): give every layer and the model an explicit name= "
            "(e.g. keras.layers.Dense(16, name='hidden')) so the paths match, "
            "or load with strict=False to skip missing entries."
        )
    return "\n".join(lines)


def checked_load(obj: Any, reader: EntryDeserializer, source: str, kind: str) -> None:
    """Loads `obj` from `reader` only if every entry checks out.

    Args:
        obj: the object to load into.
        reader: the real deserializer, rooted where `obj`'s state is.
        source: how error messages name the data, e.g. `"filename='a.h5'"`.
        kind: the format's name for error messages, e.g. `"HDF5"`.

    Raises:
        ValueError: listing the first problems when any entry is missing,
            unreadable or of the wrong shape or dtype.
    """
    from ktrainer.serializers._keras_state import serialize_object

    report = _Report()
    try:
        serialize_object(obj, CheckingDeserializer(reader, report))
    except MissingEntryError as error:
        report.missing(error.key)
    if report.problems:
        raise ValueError(_message(obj, reader, report, source, kind))
    serialize_object(obj, reader)
