"""A tiny in-memory serializer pair for the iterator tests.

It follows the `ktrainer.serializers` protocol (flat keys joined by `/`)
without depending on the real HDF5/npz writers.
"""

from __future__ import annotations

import numpy as np

from ktrainer.serializers._base import Deserializer, Serializer


class MemorySerializer(Serializer):
    """Stores each entry in a dict; arrays are copied."""

    def __init__(self, target: dict | None = None, prefix: str = "") -> None:
        self.target = {} if target is None else target
        self.prefix = prefix

    def __getitem__(self, key: str) -> MemorySerializer:
        return MemorySerializer(self.target, f"{self.prefix}{key}/")

    def __call__(self, key, value):
        stored = np.array(value) if isinstance(value, np.ndarray) else value
        self.target[self.prefix + key] = stored
        return value


class MemoryDeserializer(Deserializer):
    """Reads entries back, as `ktrainer.serializers` deserializers do."""

    def __init__(self, target: dict, prefix: str = "") -> None:
        self.target = target
        self.prefix = prefix

    def __getitem__(self, key: str) -> MemoryDeserializer:
        return MemoryDeserializer(self.target, f"{self.prefix}{key}/")

    def __call__(self, key, value):
        stored = self.target[self.prefix + key]
        if value is None:
            return stored
        if isinstance(value, np.ndarray):
            np.copyto(value, stored)
            return value
        return type(value)(stored)


class CheckingDeserializer(MemoryDeserializer):
    """The first phase of a load: checks every entry, returns current values."""

    def __getitem__(self, key: str) -> CheckingDeserializer:
        return CheckingDeserializer(self.target, f"{self.prefix}{key}/")

    def __call__(self, key, value):
        stored = self.target[self.prefix + key]
        if isinstance(value, np.ndarray):
            assert np.shape(stored) == value.shape, key
        return value
