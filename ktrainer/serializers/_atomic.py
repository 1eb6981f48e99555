"""Atomic file replacement for snapshots.

A snapshot is written to a temporary file next to its target, flushed to
disk and then renamed over the target, so a crash or an exception during
the save never leaves a half-written file where the previous snapshot was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; not possible on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class EarlyWriteback:
    """Starts writing a file's data to disk while the file is still written.

    A durable save ends with an fsync that waits for every byte to reach
    the disk. Asking the kernel to start writing back what is already in
    the file (`posix_fadvise(..., POSIX_FADV_DONTNEED)` on Linux: it
    queues the dirty pages for writeback without waiting, and drops them
    from the cache once clean) after each large array lets the disk work
    while the rest is serialized, so the final fsync has little left to
    wait for. A no-op where `posix_fadvise` does not exist.
    """

    # Only after this many bytes of new data: a syscall per small entry
    # would cost more than it saves.
    THRESHOLD = 4 << 20

    def __init__(self, path: str) -> None:
        self._fd = None
        self._pending = 0
        if hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError):
                self._fd = os.open(path, os.O_RDONLY)

    def wrote(self, nbytes: int) -> None:
        """Counts `nbytes` more written; starts a writeback past the threshold."""
        if self._fd is None:
            return
        self._pending += nbytes
        if self._pending >= self.THRESHOLD:
            self._pending = 0
            with contextlib.suppress(OSError):
                os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path to write; on success it replaces `path`.

    The temporary file lives in the directory of `path` (a rename is only
    atomic within one file system) and is named `.<name>.<random>.tmp`, so
    globs for the target's name do not match it. When the block exits
    normally the file is fsynced and moved onto `path` with `os.replace`;
    when it raises, the temporary file is removed and `path` is untouched.

    Args:
        path: the file to write.

    Example:

    ```python
    with atomic_write("result/snapshot_iter_100") as tmp:
        with h5py.File(tmp, "w") as f:
            ...
    ```
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    temp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: never clobber another writer's temporary file; mode 0o666 lets
    # the umask decide permissions, as for a file opened with open().
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield temp
        _fsync_file(temp)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise
    _fsync_directory(directory)
