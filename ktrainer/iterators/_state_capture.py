"""In-memory copies of an object's `serialize` state, to roll it back.

`MultithreadIterator` draws the next epoch's order one batch early (while
prefetching). Before it saves a snapshot it rolls its order sampler back
to the state before that draw, so the snapshot holds exactly what an
uninterrupted run would have at that point.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class _Recorder:
    def __init__(self, record: dict) -> None:
        self._record = record

    def __getitem__(self, name: str) -> _Recorder:
        return _Recorder(self._record.setdefault(name, {}))

    def __call__(self, key: str, value: Any) -> Any:
        self._record[key] = np.array(value) if isinstance(value, np.ndarray) else value
        return value


class _Replayer:
    def __init__(self, record: dict) -> None:
        self._record = record

    def __getitem__(self, name: str) -> _Replayer:
        return _Replayer(self._record[name])

    def __call__(self, key: str, value: Any) -> Any:
        stored = self._record[key]
        if isinstance(value, np.ndarray):
            np.copyto(value, stored)
            return value
        return stored


def capture(obj: Any) -> dict:
    """Returns a copy of what `obj.serialize` would save."""
    record: dict = {}
    obj.serialize(_Recorder(record))
    return record


def restore(obj: Any, record: dict) -> None:
    """Loads a `capture` result back into `obj`."""
    obj.serialize(_Replayer(record))
