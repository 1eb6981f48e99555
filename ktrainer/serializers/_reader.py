"""The shared base of deserializers that read named entries from a store.

`HDF5Deserializer` and `NpzDeserializer` differ only in how they find,
read and list entries; the path handling, `strict`, and the conversion
into the loaded value live here once.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Any

from ktrainer.serializers._base import Deserializer
from ktrainer.serializers._values import restore


class MissingEntryError(KeyError):
    """Raised by a strict deserializer for an entry the data lacks.

    A `KeyError`, so `serialize` methods may catch it to accept data
    written by an older version, as Chainer's do.
    """

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return (
            f"the serialized data has no entry {self.key!r} "
            "(load with strict=False to skip missing entries)"
        )


def normalize_path(path: str) -> str:
    """Returns `path` as a prefix of entry names: no leading '/', one trailing."""
    if not isinstance(path, str):
        raise TypeError(f"path must be a str. Received: path={path!r}")
    path = path.lstrip("/")
    return path if not path or path.endswith("/") else path + "/"


class EntryDeserializer(Deserializer):
    """A deserializer over a flat namespace of '/'-joined entry names."""

    def __init__(self, path: str, strict: bool) -> None:
        self.path = normalize_path(path)
        self.strict = bool(strict)

    def __getitem__(self, key: str) -> EntryDeserializer:
        return self._child(self.path + key.strip("/") + "/")

    def __call__(self, key: str, value: Any) -> Any:
        full_key = self.path + key.lstrip("/")
        if self._ignored(full_key):
            return value
        if not self._has(full_key):
            if self.strict:
                raise MissingEntryError(full_key)
            return value
        return restore(full_key, self._read(full_key), value)

    @abc.abstractmethod
    def _child(self, path: str) -> EntryDeserializer:
        """Returns a deserializer like this one rooted at `path`."""

    @abc.abstractmethod
    def _has(self, full_key: str) -> bool:
        """Whether the store holds the entry `full_key`."""

    @abc.abstractmethod
    def _read(self, full_key: str) -> Any:
        """Returns the decoded entry: `NONE`, a `str` or a numpy array."""

    @abc.abstractmethod
    def _keys(self) -> Iterable[str]:
        """Returns the full names of every stored entry under `self.path`."""

    def _written(self, full_key: str) -> bool:
        """Whether the file says it was written with the entry `full_key`.

        True for an entry the file's checksum list names: if it cannot be
        found, the file is damaged, not from an older version.
        """
        return False

    def _read_for_check(self, full_key: str) -> Any:
        """Reads an entry for the checking pass of a transactional load."""
        return self._read(full_key)

    def _ignored(self, full_key: str) -> bool:
        return False
