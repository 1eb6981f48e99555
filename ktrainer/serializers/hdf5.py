"""Serialization to HDF5 files: the format of ktrainer snapshots.

The object hierarchy maps onto HDF5 groups and each entry onto a dataset,
so a snapshot can be read with plain `h5py`. Numbers and arrays are
numeric datasets, strings are UTF-8 string datasets, and `None` is an
empty dataset (`h5py.Empty`); nothing is pickled.

`save_hdf5` also stores a checksum of every entry (see `_checksum`),
which every load verifies, so a damaged file is an error rather than
different weights. A file written without checksums (by an older version,
or by an `HDF5Serializer` used directly) still loads, unverified. Before
reading an entry, its declared size is compared with the size of the
file, and a chunked (compressed) entry must hold every chunk its shape
declares, so a damaged header that claims an enormous array fails at once
instead of making the load allocate it and HDF5 fill it chunk by chunk
(about 2 GiB a minute: a flipped bit in a dimension made loads run for
many minutes).
"""

from __future__ import annotations

import errno
import math
import os
from typing import Any

import h5py
import numpy as np
from h5py import h5s

from ktrainer.serializers import _checksum
from ktrainer.serializers._atomic import EarlyWriteback, atomic_write
from ktrainer.serializers._base import Serializer
from ktrainer.serializers._checker import checked_load
from ktrainer.serializers._keras_state import serialize_object
from ktrainer.serializers._reader import EntryDeserializer
from ktrainer.serializers._values import NONE, decode_array, to_storable


def _check_compression(compression: Any) -> int:
    message = (
        "compression must be an int from 0 (none) to 9. "
        f"Received: compression={compression!r}"
    )
    if isinstance(compression, bool) or not isinstance(compression, int):
        raise TypeError(message)
    if not 0 <= compression <= 9:
        raise ValueError(message)
    return compression


def _check_group(group: Any) -> None:
    if not isinstance(group, h5py.Group):
        raise TypeError(
            "group must be an h5py.File or h5py.Group. "
            f"Received: group of type {type(group).__name__}"
        )


class HDF5Serializer(Serializer):
    """Writes state into an HDF5 group.

    `serializer[name]` is the serializer of the sub-group `name` (created
    on demand); `serializer(key, value)` writes `value` as the dataset
    `key` and returns `value`. A key may contain '/' to write into nested
    groups, as Keras variable paths do. Arrays are written with a single
    `create_dataset` call, uncompressed unless `compression` is set.

    Args:
        group: the `h5py.File` or `h5py.Group` to write into.
        compression: gzip level from 1 to 9 for arrays of more than one
            element, or 0 for none (fastest). Defaults to `0`.
    """

    def __init__(
        self,
        group: h5py.Group,
        compression: int = 0,
        *,
        _digests: _checksum.Digester | None = None,
        _writeback: EarlyWriteback | None = None,
    ) -> None:
        _check_group(group)
        self.group = group
        self.compression = _check_compression(compression)
        # Filled by `save_hdf5`, which writes the digests when the file is done.
        self._digests = _digests
        self._writeback = _writeback

    def __getitem__(self, key: str) -> HDF5Serializer:
        return HDF5Serializer(
            self.group.require_group(key.strip("/")),
            self.compression,
            _digests=self._digests,
            _writeback=self._writeback,
        )

    def __call__(self, key: str, value: Any) -> Any:
        name = key.lstrip("/")
        # No copy: h5py writes the array before this call returns.
        stored = to_storable(key, value, copy=False)
        try:
            dataset = self._create(name, stored)
        except ValueError:
            # h5py refuses an existing name; asking only then keeps a
            # lookup per entry out of every save.
            if name in self.group:
                raise ValueError(
                    f"key must be new in its group, but "
                    f"{self.group.name.rstrip('/')}/{name} was already written. "
                    f"Received: key={key!r}"
                ) from None
            raise
        if self._digests is not None:
            self._digests.add(dataset.name, stored)
        if self._writeback is not None and isinstance(stored, np.ndarray):
            self._writeback.wrote(stored.nbytes)
        return value

    def _create(self, name: str, stored: Any) -> h5py.Dataset:
        if stored is NONE:
            return self.group.create_dataset(name, data=h5py.Empty("f"))
        if isinstance(stored, str) or stored.dtype.kind == "U":
            return _create_text(self.group, name, stored)
        if self.compression and stored.size > 1:
            return self.group.create_dataset(
                name, data=stored, compression="gzip", compression_opts=self.compression
            )
        return self.group.create_dataset(name, data=stored)


def _create_text(group: h5py.Group, name: str, stored: Any) -> h5py.Dataset:
    """Writes a `str` or a string array as fixed-length UTF-8 strings.

    Fixed-length, so the text lives in the dataset's own data, bounded by
    its declared size and covered by its checksum. HDF5's variable-length
    strings live in a global heap that nothing checksums: a damaged heap
    made a load hang. HDF5 pads fixed-length strings with NULs, which
    reading strips, so text with a NUL is refused (variable-length
    strings cannot hold one either).
    """
    items = [stored] if isinstance(stored, str) else stored.reshape(-1).tolist()
    if any("\0" in item for item in items):
        raise ValueError(
            f"the text of entry {name!r} must not contain NUL characters. "
            f"Received: {stored!r}"
        )
    encoded = [item.encode("utf-8") for item in items]
    length = max([len(item) for item in encoded] + [1])
    shape = () if isinstance(stored, str) else stored.shape
    dataset = group.create_dataset(
        name, shape=shape, dtype=h5py.string_dtype("utf-8", length)
    )
    if encoded:
        data = np.array(encoded, dtype=f"S{length}").reshape(shape)
        # The bytes are UTF-8 already: written as they are, no conversion.
        dataset.id.write(h5s.ALL, h5s.ALL, data, mtype=dataset.id.get_type())
    return dataset


# The most a deflated dataset can expand (zlib's limit is about 1032:1).
_MAX_EXPANSION = 1100


def _check_size(dataset: h5py.Dataset) -> None:
    """Refuses a dataset whose declared size the file cannot hold.

    A damaged header may declare an enormous shape; reading it would make
    numpy allocate, and HDF5 fill, that much memory, which can take many
    minutes (or swap) before anything fails.
    """
    declared = dataset.size * dataset.dtype.itemsize
    file_size = dataset.file.id.get_filesize()
    packed = dataset.chunks is not None or dataset.compression is not None
    limit = file_size * _MAX_EXPANSION + (1 << 20) if packed else file_size
    if declared > limit:
        raise ValueError(
            f"its header declares shape {dataset.shape} {dataset.dtype} "
            f"({declared} bytes), more than the {file_size}-byte file can hold"
        )
    if dataset.chunks is not None and dataset.size:
        # HDF5 fills every chunk that was never written, one by one (about
        # 2 GiB a minute); a serializer writes every chunk, so a missing
        # one means a damaged shape.
        declared_chunks = math.prod(
            -(-n // c) for n, c in zip(dataset.shape, dataset.chunks)
        )
        stored_chunks = dataset.id.get_num_chunks()
        if stored_chunks < declared_chunks:
            raise ValueError(
                f"its header declares shape {dataset.shape} in {declared_chunks} "
                f"chunks, but the file holds {stored_chunks} of them"
            )


def _read_stored(dataset: h5py.Dataset) -> Any:
    """The entry as stored: `NONE`, a `str` or an array (still encoded)."""
    if dataset.shape is None:
        return NONE
    _check_size(dataset)
    if h5py.check_string_dtype(dataset.dtype) is not None:
        try:
            data = dataset.asstr()[()]
        except UnicodeDecodeError as error:
            raise ValueError(f"its text is not valid UTF-8 ({error})") from None
        return data if isinstance(data, str) else np.array(data.tolist(), dtype=str)
    return np.asarray(dataset[()])


def _decode(stored: Any) -> Any:
    if isinstance(stored, np.ndarray) and stored.dtype.kind not in "UO":
        return decode_array(stored)
    return stored


class _FileDigests:
    """The digests of one file, read once when the first entry is read."""

    def __init__(self, file: h5py.File) -> None:
        self._file = file
        self._digests: dict[str, int] | None = None
        self._error: ValueError | None = None
        self._read = False

    def get(self) -> dict[str, int] | None:
        if not self._read:
            self._read = True
            try:
                self._digests = self._load()
            except ValueError as error:
                self._error = error
            except Exception as error:  # h5py's KeyError or OSError for damage
                self._error = ValueError(f"its checksum list cannot be read ({error})")
        if self._error is not None:
            raise ValueError(str(self._error))
        return self._digests

    def _load(self) -> dict[str, int] | None:
        # The root's attribute says the file has checksums; the root's
        # header is checksummed by HDF5 itself, so the mark cannot vanish
        # unnoticed when the list is damaged.
        marked = _checksum.CHECKSUMS_NAME in self._file.attrs
        node = self._file.get(_checksum.CHECKSUMS_NAME)
        if node is None:
            if marked:
                raise ValueError("its checksum list is missing")
            return None
        if not isinstance(node, h5py.Dataset) or node.shape != ():
            raise ValueError("its checksum list is damaged (not a string)")
        stored = _read_stored(node)
        if not isinstance(stored, str):
            raise ValueError("its checksum list is damaged (not a string)")
        return _checksum.decode(stored)


class HDF5Deserializer(EntryDeserializer):
    """Reads state from an HDF5 group.

    `deserializer(key, value)` reads the dataset at `path + key` into
    `value` (see `Deserializer`); `deserializer[name]` reads from the
    sub-group `name`. An empty dataset reads as `None`.

    Args:
        group: the `h5py.File` or `h5py.Group` to read from.
        path: the sub-group to start from, e.g. `'updater/model:main/'`.
            Defaults to `''` (the whole group).
        strict: whether a missing entry raises `KeyError`; when `False`
            it is skipped and the value is returned unchanged.
            Defaults to `True`.
    """

    def __init__(
        self,
        group: h5py.Group,
        path: str = "",
        strict: bool = True,
        *,
        _digests: _FileDigests | None = None,
    ) -> None:
        _check_group(group)
        super().__init__(path, strict)
        self.group = group
        self._digests = _FileDigests(group.file) if _digests is None else _digests

    def _child(self, path: str) -> HDF5Deserializer:
        return HDF5Deserializer(self.group, path, self.strict, _digests=self._digests)

    def _has(self, full_key: str) -> bool:
        return isinstance(self.group.get(full_key), h5py.Dataset)

    def _written(self, full_key: str) -> bool:
        digests = self._digests.get()
        return digests is not None and "/" + full_key in digests

    def _read(self, full_key: str) -> Any:
        dataset = self.group[full_key]
        stored = _read_stored(dataset)
        _checksum.verify(dataset.name, stored, self._digests.get())
        return _decode(stored)

    def _keys(self) -> list[str]:
        base = self.group.get(self.path.rstrip("/")) if self.path else self.group
        if not isinstance(base, h5py.Group):
            return []
        keys: list[str] = []

        def visit(name: str, node: Any) -> None:
            if isinstance(node, h5py.Dataset) and node.name != _CHECKSUMS_PATH:
                keys.append(self.path + name)

        base.visititems(visit)
        return keys


_CHECKSUMS_PATH = "/" + _checksum.CHECKSUMS_NAME


class _CachingHDF5Deserializer(HDF5Deserializer):
    """Keeps what the checking pass read, so a load reads the file once."""

    def __init__(
        self,
        group: h5py.Group,
        path: str,
        strict: bool,
        cache: dict,
        digests: _FileDigests | None = None,
    ) -> None:
        super().__init__(group, path, strict, _digests=digests)
        self._cache = cache

    def _child(self, path: str) -> _CachingHDF5Deserializer:
        return _CachingHDF5Deserializer(
            self.group, path, self.strict, self._cache, self._digests
        )

    def _read_for_check(self, full_key: str) -> Any:
        value = self._cache[full_key] = super()._read(full_key)
        return value

    def _read(self, full_key: str) -> Any:
        if full_key in self._cache:
            return self._cache.pop(full_key)
        return super()._read(full_key)


def _check_filename(filename: Any) -> str:
    if not isinstance(filename, (str, os.PathLike)):
        raise TypeError(
            "filename must be a str or os.PathLike. "
            f"Received: filename of type {type(filename).__name__}"
        )
    return os.fspath(filename)


def save_hdf5(filename: str | os.PathLike, obj: Any, compression: int = 0) -> None:
    """Saves `obj` to an HDF5 file, atomically.

    The file is written next to `filename` under a temporary name, synced
    to disk and renamed over `filename`; if the save fails, an existing
    file at `filename` is left as it was. The disk starts writing the data
    while later entries are serialized (`EarlyWriteback`), so the final
    sync waits for little. A checksum of every entry is
    stored with it (the dataset `.ktrainer_checksums`), which `load_hdf5`
    verifies.

    Args:
        filename: the file to write.
        obj: an object with `serialize(serializer)`, a Keras model, layer
            or optimizer, or a dict of '/'-joined names to values (written
            as they are, as Chainer does).
        compression: gzip level 1 to 9, or 0 for none. Defaults to `0`.
    """
    filename = _check_filename(filename)
    compression = _check_compression(compression)
    digests = _checksum.Digester()
    # The HDF5 1.8 file format checksums the file's own metadata (the
    # superblock, object headers, link storage), so a damaged header or a
    # link that points elsewhere is an error, never a loop or a wrong
    # entry; it costs nothing measurable and any HDF5 >= 1.8 reads it.
    with (
        atomic_write(filename) as temp,
        h5py.File(temp, "w", libver=("v108", "latest")) as f,
    ):
        writeback = EarlyWriteback(temp)
        serializer = HDF5Serializer(
            f, compression, _digests=digests, _writeback=writeback
        )
        try:
            if isinstance(obj, dict):
                for key, value in obj.items():
                    serializer(key, value)
            else:
                serialize_object(obj, serializer)
        finally:
            digests.close()  # no thread outlives a failed save
            writeback.close()
        _create_text(f, _checksum.CHECKSUMS_NAME, _checksum.encode(digests.result()))
        f.attrs[_checksum.CHECKSUMS_NAME] = _checksum.ALGORITHM


def load_hdf5(
    filename: str | os.PathLike, obj: Any, path: str = "", strict: bool = True
) -> None:
    """Loads `obj` from an HDF5 file, all or nothing.

    Every entry that `obj` asks for is read and checked against its
    current value (presence unless `strict=False`, shape and dtype) before
    anything is assigned; any problem raises one `ValueError` listing
    them and leaves `obj` as it was.

    Args:
        filename: the file to read.
        obj: an object with `serialize(serializer)`, or a Keras model,
            layer or optimizer.
        path: the group in the file that holds `obj`'s state, e.g.
            `'updater/model:main/'`. Defaults to `''` (the whole file).
        strict: whether entries missing from the file are an error; when
            `False` they are skipped. Defaults to `True`.

    When the file carries checksums (every file `save_hdf5` writes), each
    entry read is verified against its digest, and an entry the checksum
    list names but the file lacks is damage too (not an older file that a
    `serialize` method may accept with a fallback). A file that holds
    nothing of what `obj` reads (a Keras `.weights.h5`, or a model's file
    loaded into a Trainer) is reported as such, with what it holds.

    Raises:
        FileNotFoundError: if `filename` does not exist.
        ValueError: if the file is not readable HDF5, is damaged (an
            entry fails its checksum, or declares more data than the
            file holds), or does not match `obj`. The message names each
            entry at fault; `obj` is left untouched.
    """
    filename = _check_filename(filename)
    if not os.path.exists(filename):
        # Two arguments: the message names the path once ("[Errno 2] ...").
        raise FileNotFoundError(
            errno.ENOENT,
            f"filename must name an existing HDF5 snapshot. Received: {filename!r}",
        )
    # Surfaces permission and is-a-directory errors as themselves.
    open(filename, "rb").close()
    try:
        f = h5py.File(filename, "r")
    except OSError as error:
        raise ValueError(
            f"filename={filename!r} is not a readable HDF5 snapshot: "
            f"it is truncated, damaged or in another format ({error})"
        ) from error
    with f:
        reader = _CachingHDF5Deserializer(f, path, strict, {})
        checked_load(obj, reader, f"filename={filename!r}", "HDF5")
