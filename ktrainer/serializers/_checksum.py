"""Per-entry checksums of HDF5 snapshots.

HDF5 stores no checksum of a dataset's data by default, so a flipped bit
or a zeroed disk block in a snapshot would load as different weights.
`save_hdf5` therefore records a 32-bit digest of every entry it writes,
and `load_hdf5` verifies each entry it reads against it.

The digest (algorithm `'blocksum64-crc32'`) covers the entry's dtype,
shape and bytes. Its bulk is cheap: the data is read as little-endian
64-bit words, the words of each 4 KiB block are added (mod 2**64), and
the CRC-32 of those block sums, of the bytes after the last whole block
and of the dtype and shape is the digest. Adding words runs at memory
speed in numpy, so the checksum costs a few per cent of an unsynced save
(see `benchmarks/bench_snapshot.py`), where a plain CRC-32 of the data
costs half of it and HDF5's fletcher32 filter several times it. It
detects every single flipped bit (a flip changes its block's sum), a
zeroed or overwritten block (unless the new words happen to add up to the
old sum, a 2**-64 chance for changed data), blocks moved to other places,
truncations and a changed dtype or shape; it is a guard against damage,
not against someone forging a file.

All digests of a file live in one string dataset at its root,
`CHECKSUMS_NAME`, holding JSON: `{"algorithm": ..., "entries": {path:
digest}}` with each dataset's absolute HDF5 path. One dataset is much
cheaper to write than an attribute per entry. A file without it (written
before checksums existed, or by a bare `HDF5Serializer`) loads unverified.
"""

from __future__ import annotations

import json
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

ALGORITHM = "blocksum64-crc32"
CHECKSUMS_NAME = ".ktrainer_checksums"

_BLOCK_BYTES = 4096
_WORDS_PER_BLOCK = _BLOCK_BYTES // 8
# The digests dataset of a snapshot with a million entries is ~100 MB;
# anything larger is a damaged header, not a digest list.
_MAX_DIGESTS_BYTES = 1 << 28


def digest(stored: Any) -> int:
    """The checksum of a stored form: `NONE`, a `str` or a numpy array."""
    if isinstance(stored, str):
        return zlib.crc32(stored.encode("utf-8"), zlib.crc32(b"str"))
    if not isinstance(stored, np.ndarray):  # the NONE marker
        return zlib.crc32(b"none")
    if stored.dtype.kind in "UO":
        if stored.ndim == 0:  # reads back as a plain str
            return digest(str(stored[()]))
        crc = zlib.crc32(f"strings{stored.shape}".encode())
        for item in stored.reshape(-1).tolist():
            crc = zlib.crc32(str(item).encode("utf-8") + b"\0", crc)
        return crc
    array = np.ascontiguousarray(stored)
    crc = zlib.crc32(f"{array.dtype.str}{array.shape}".encode())
    raw = array.reshape(-1).view(np.uint8)
    whole = raw.size - raw.size % _BLOCK_BYTES
    if whole:
        words = raw[:whole].view("<u8").reshape(-1, _WORDS_PER_BLOCK)
        sums = np.add.reduce(words, axis=1, dtype=np.uint64).astype("<u8")
        crc = zlib.crc32(sums, crc)
    return zlib.crc32(raw[whole:], crc)


# Arrays this large are digested by `Digester`'s thread; smaller ones cost
# less inline than a hand-off.
_THREADED_BYTES = 1 << 18


class Digester:
    """Collects the digests of a file's entries while the file is written.

    The digest of a large array runs in one background thread, so it
    overlaps the write of that array and the next ones (numpy's sums and
    `zlib.crc32` release the GIL): the checksum adds little to a save's
    time. Arrays are read, never copied, so the caller must not change an
    array it has added until `result()` returned.
    """

    def __init__(self) -> None:
        self._done: dict[str, int] = {}
        self._pending: dict[str, Future] = {}
        self._executor: ThreadPoolExecutor | None = None

    def add(self, name: str, stored: Any) -> None:
        """Digests `stored` (a stored form) as the entry `name`."""
        if isinstance(stored, np.ndarray) and stored.nbytes >= _THREADED_BYTES:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, "ktrainer-digest")
            self._pending[name] = self._executor.submit(digest, stored)
        else:
            self._done[name] = digest(stored)

    def result(self) -> dict[str, int]:
        """All digests by entry name, once every one is computed."""
        self.close()
        return self._done

    def close(self) -> None:
        """Waits for the digests in flight and stops the thread."""
        try:
            for name, future in self._pending.items():
                self._done[name] = future.result()
        finally:
            self._pending.clear()
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


def encode(digests: dict[str, int]) -> str:
    """The JSON text of the checksums dataset."""
    return json.dumps({"algorithm": ALGORITHM, "entries": digests}, sort_keys=True)


def decode(text: str) -> dict[str, int]:
    """Parses the checksums dataset; raises `ValueError` if it is damaged."""
    if len(text) > _MAX_DIGESTS_BYTES:
        raise ValueError(f"its checksum list is implausibly large ({len(text)} bytes)")
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ValueError(f"its checksum list is damaged ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise ValueError("its checksum list is damaged (not a JSON object)")
    if data.get("algorithm") != ALGORITHM:
        raise ValueError(
            f"its checksums use the algorithm {data.get('algorithm')!r}, but "
            f"this version of ktrainer knows only {ALGORITHM!r}"
        )
    entries = data["entries"]
    if not all(isinstance(v, int) for v in entries.values()):
        raise ValueError("its checksum list is damaged (a digest is not an int)")
    return entries


class ChecksumMismatchError(ValueError):
    """An entry whose data does not match the digest stored for it."""


def verify(name: str, stored: Any, digests: dict[str, int] | None) -> None:
    """Raises `ChecksumMismatchError` unless `stored` matches its digest.

    Args:
        name: the dataset's absolute HDF5 path, the key in `digests`.
        stored: the entry as read, before any decoding.
        digests: the file's digests, or `None` for a file without them.
    """
    if digests is None:
        return
    expected = digests.get(name)
    if expected is None:
        raise ChecksumMismatchError(
            "the file carries checksums but none for this entry, so its "
            "name or the checksum list is damaged"
        )
    actual = digest(stored)
    if actual != expected:
        raise ChecksumMismatchError(
            f"checksum mismatch (stored {expected:#010x}, computed "
            f"{actual:#010x}): the entry's data is damaged"
        )
