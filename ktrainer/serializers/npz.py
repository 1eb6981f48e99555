"""Serialization to NPZ files (numpy zip archives), without pickling.

Each entry is one `.npy` member named by its '/'-joined path; `None` is a
marker record (see `DictionarySerializer`) and strings are unicode arrays,
so `np.load(file, allow_pickle=False)` reads every file this writes.
"""

from __future__ import annotations

import errno
import os
import zipfile
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np

from ktrainer.serializers._atomic import atomic_write
from ktrainer.serializers._checker import checked_load
from ktrainer.serializers._keras_state import serialize_object
from ktrainer.serializers._reader import EntryDeserializer
from ktrainer.serializers._values import NONE, decode_array
from ktrainer.serializers.dictionary import NONE_DTYPE, DictionarySerializer

IgnoreNames = str | Callable[[str], bool] | list | tuple | None


def _check_ignore_names(ignore_names: Any) -> tuple:
    if ignore_names is None:
        return ()
    names = ignore_names if isinstance(ignore_names, (list, tuple)) else (ignore_names,)
    for name in names:
        if not (isinstance(name, str) or callable(name)):
            raise TypeError(
                "ignore_names must be a str, a callable, or a list of them. "
                f"Received: ignore_names={ignore_names!r}"
            )
    return tuple(names)


class NpzDeserializer(EntryDeserializer):
    """Reads state from a loaded NPZ archive (or any dict of arrays).

    `deserializer(key, value)` reads the entry `path + key` into `value`
    (see `Deserializer`); `deserializer[name]` reads below `name/`.

    Args:
        npz: the result of `np.load(file, allow_pickle=False)`, or a dict
            of '/'-joined names to arrays such as `DictionarySerializer`
            collects.
        path: the prefix to start from, e.g. `'updater/model:main/'`.
            Defaults to `''`.
        strict: whether a missing entry raises `KeyError`; when `False`
            it is skipped and the value is returned unchanged.
            Defaults to `True`.
        ignore_names: full entry names to skip, or callables that take a
            full name and return `True` to skip it, or a list of either.
            Defaults to `None`.
    """

    def __init__(
        self,
        npz: Mapping[str, np.ndarray],
        path: str = "",
        strict: bool = True,
        ignore_names: IgnoreNames = None,
    ) -> None:
        if not isinstance(npz, Mapping):
            raise TypeError(
                "npz must be a loaded NPZ archive or a dict of arrays. "
                f"Received: npz of type {type(npz).__name__}"
            )
        super().__init__(path, strict)
        self.npz = npz
        self.ignore_names = _check_ignore_names(ignore_names)

    def _child(self, path: str) -> NpzDeserializer:
        return NpzDeserializer(self.npz, path, self.strict, self.ignore_names)

    def _ignored(self, full_key: str) -> bool:
        return any(
            name == full_key if isinstance(name, str) else name(full_key)
            for name in self.ignore_names
        )

    def _has(self, full_key: str) -> bool:
        return full_key in self.npz

    def _read(self, full_key: str) -> Any:
        array = np.asarray(self.npz[full_key])
        if array.dtype == NONE_DTYPE:
            return NONE
        if array.dtype.kind == "U" and array.ndim == 0:
            return str(array[()])
        return decode_array(array)

    def _keys(self) -> list[str]:
        return [k for k in self.npz if k.startswith(self.path)]


def _write_npz(
    file: IO[bytes], arrays: dict[str, np.ndarray], compression: bool
) -> None:
    # What np.savez does, minus its keyword-argument interface (an entry
    # named 'file' would collide) and with pickling refused.
    method = zipfile.ZIP_DEFLATED if compression else zipfile.ZIP_STORED
    with zipfile.ZipFile(file, "w", compression=method, allowZip64=True) as archive:
        for key, array in arrays.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(
                    member, np.asanyarray(array), allow_pickle=False
                )


def save_npz(
    file: str | os.PathLike | IO[bytes], obj: Any, compression: bool = True
) -> None:
    """Saves `obj` to an NPZ file; atomically when `file` is a path.

    Args:
        file: a path, or a binary file object to write into.
        obj: an object with `serialize(serializer)`, or a Keras model,
            layer or optimizer.
        compression: whether to deflate the archive. Defaults to `True`.
    """
    serializer = DictionarySerializer()
    serialize_object(obj, serializer)
    if isinstance(file, (str, os.PathLike)):
        with atomic_write(file) as temp, open(temp, "wb") as f:
            _write_npz(f, serializer.target, compression)
    else:
        _write_npz(file, serializer.target, compression)


def _read_npz(file: Any, source: str) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an archive")
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except Exception as error:
        raise ValueError(
            f"{source} is not a readable NPZ snapshot: it is truncated, damaged "
            f"or in another format ({type(error).__name__}: {error})"
        ) from error


def load_npz(
    file: str | os.PathLike | IO[bytes],
    obj: Any,
    path: str = "",
    strict: bool = True,
    ignore_names: IgnoreNames = None,
) -> None:
    """Loads `obj` from an NPZ file, all or nothing.

    The archive is read with `np.load(allow_pickle=False)`; every entry
    that `obj` asks for is checked against its current value before
    anything is assigned, and any problem raises one `ValueError` listing
    them and leaves `obj` as it was.

    Args:
        file: a path, or a binary file object to read from.
        obj: an object with `serialize(serializer)`, or a Keras model,
            layer or optimizer.
        path: the prefix of `obj`'s entries, e.g. `'updater/model:main/'`.
            Defaults to `''`.
        strict: whether entries missing from the file are an error; when
            `False` they are skipped. Defaults to `True`.
        ignore_names: entries to skip (see `NpzDeserializer`).
            Defaults to `None`.

    Raises:
        FileNotFoundError: if `file` is a path that does not exist.
        ValueError: if the file is not a readable NPZ archive, or does not
            match `obj`.
    """
    ignore_names = _check_ignore_names(ignore_names)
    if isinstance(file, (str, os.PathLike)):
        file = os.fspath(file)
        source = f"file={file!r}"
        if not os.path.exists(file):
            raise FileNotFoundError(
                errno.ENOENT,
                f"file must name an existing NPZ snapshot. Received: {file!r}",
            )
        # np.load leaks the file it opens when the archive is damaged.
        with open(file, "rb") as f:
            arrays = _read_npz(f, source)
    else:
        source = f"file={file!r}"
        arrays = _read_npz(file, source)
    reader = NpzDeserializer(arrays, path, strict, ignore_names)
    checked_load(obj, reader, source, "NPZ")
