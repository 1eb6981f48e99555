"""Helpers for the trigger tests: an in-memory serializer pair.

They follow the project's serialization protocol (Chainer's): `s[name]`
gives a child, `s(key, value)` saves or loads one value, and a missing key
raises `KeyError` on load.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class DictSerializer:
    """Saves values into a flat dict keyed by `/`-joined paths."""

    def __init__(self, target: dict | None = None, path: str = "") -> None:
        self.target = {} if target is None else target
        self.path = path

    def __getitem__(self, name: str) -> DictSerializer:
        return DictSerializer(self.target, self.path + name + "/")

    def __call__(self, key: str, value: Any) -> Any:
        stored = np.array(value) if isinstance(value, np.ndarray) else value
        self.target[self.path + key] = stored
        return value


class DictDeserializer:
    """Loads values from a dict written by `DictSerializer`.

    With `checking=True` it only checks that every key exists and returns
    the current values, as the first phase of a project load does.
    """

    def __init__(self, source: dict, path: str = "", checking: bool = False) -> None:
        self.source = source
        self.path = path
        self.checking = checking

    def __getitem__(self, name: str) -> DictDeserializer:
        return DictDeserializer(self.source, self.path + name + "/", self.checking)

    def __call__(self, key: str, value: Any) -> Any:
        stored = self.source[self.path + key]  # KeyError when missing
        if self.checking:
            return value
        if value is None:
            return stored
        if isinstance(value, np.ndarray):
            value[...] = stored
            return value
        return type(value)(stored)


def save(obj: Any) -> dict:
    """Returns `obj`'s serialized state as a dict."""
    target: dict = {}
    obj.serialize(DictSerializer(target))
    return target


def load(state: dict, obj: Any) -> None:
    """Loads `state` into `obj` in two phases, as the project's loaders do."""
    obj.serialize(DictDeserializer(state, checking=True))
    obj.serialize(DictDeserializer(state))
