"""Snapshot writers: how the `snapshot` extension puts a snapshot on disk.

A writer is called as `writer(filename, outdir, target)` each time a
snapshot is taken and decides how and when `target` is written to
`os.path.join(outdir, filename)`. `SimpleWriter` writes it at once;
`ThreadWriter` copies the state to host memory and writes it from a
background thread while training goes on. Both write atomically: the file
appears under its name complete, or not at all.

Unlike Chainer, where the extension hands writers a dict it serialized
first, `target` here is the object itself (the trainer, or the object of
`snapshot_object`): a writer that writes at once has no reason to copy the
state first. `savefun(path, target, **kwds)` may be any function that
`save_hdf5` could be swapped for, such as `save_npz`.

There is no `ProcessWriter`: handing state to another process means
pickling it, and ktrainer pickles nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ktrainer.serializers import (
    Deserializer,
    Serializer,
    save_hdf5,
    save_npz,
    serialize_object,
)
from ktrainer.serializers._atomic import atomic_write
from ktrainer.serializers._values import NONE, to_storable

SaveFun = Callable[..., Any]

# These write through `atomic_write` themselves.
_ATOMIC_SAVEFUNS = (save_hdf5, save_npz)


def _check_savefun(savefun: Any) -> SaveFun:
    if not callable(savefun):
        raise TypeError(
            "savefun must be a callable savefun(path, target), such as "
            f"save_hdf5. Received: savefun={savefun!r}"
        )
    return savefun


class Writer:
    """Base class of snapshot writers.

    Subclasses implement `__call__(filename, outdir, target)`, usually by
    calling `save`, which writes atomically and then runs the hooks that
    the `snapshot` extension adds (the removal of old snapshots for
    `n_retains`). `finalize()` is called when training ends.
    """

    def __init__(self) -> None:
        self._post_save_hooks: list[Callable[[], None]] = []

    def __call__(self, filename: str, outdir: str, target: Any) -> None:
        """Writes `target` to `os.path.join(outdir, filename)`.

        Args:
            filename: the file's name, already formatted.
            outdir: the directory, the trainer's `out`.
            target: the object to save.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement __call__(filename, outdir, target)."
        )

    def finalize(self) -> None:
        """Finishes pending work; called when training ends."""

    def save(
        self, filename: str, outdir: str, target: Any, savefun: SaveFun, **kwds: Any
    ) -> None:
        """Writes `target` with `savefun` atomically, then runs the hooks.

        `savefun` writes a temporary file in `outdir`, which is synced and
        renamed to `filename` only once `savefun` returned; if it raises,
        the temporary file is removed and a previous file of that name
        stays as it was.
        """
        os.makedirs(outdir, exist_ok=True)
        path = os.path.join(outdir, filename)
        if savefun in _ATOMIC_SAVEFUNS:
            savefun(path, target, **kwds)  # a second temporary file buys nothing
        else:
            with atomic_write(path) as temp:
                savefun(temp, target, **kwds)
        self._post_save()

    def _add_cleanup_hook(self, hook: Callable[[], None]) -> None:
        # Called by the snapshot extension at each `initialize`: add once.
        if hook not in self._post_save_hooks:
            self._post_save_hooks.append(hook)

    def _post_save(self) -> None:
        for hook in self._post_save_hooks:
            hook()


class SimpleWriter(Writer):
    """Writes each snapshot at once, in the training thread.

    Training waits until the file is on disk. This is the default writer
    of `snapshot` and `snapshot_object`.

    Args:
        savefun: called as `savefun(path, target, **kwds)`.
            Defaults to `save_hdf5`.
        **kwds: extra keyword arguments for `savefun`, e.g.
            `compression=4` for `save_hdf5`.
    """

    def __init__(self, savefun: SaveFun = save_hdf5, **kwds: Any) -> None:
        super().__init__()
        self.savefun = _check_savefun(savefun)
        self._kwds = kwds

    def __call__(self, filename: str, outdir: str, target: Any) -> None:
        self.save(filename, outdir, target, self.savefun, **self._kwds)


class ThreadWriter(Writer):
    """Writes each snapshot from a background thread while training goes on.

    A call first copies all of the target's state into host memory, in the
    training thread, so later steps cannot change what is written: the
    training loop is blocked only for that copy. A thread then writes the
    copy with `savefun`; the file is the same as the one `savefun` writes
    from the target itself, so `load_hdf5(path, trainer)` reads both.

    Only one write is in flight at a time: a call first waits for the
    previous write to finish. If a write raised, its exception is raised
    again by the next call or by `finalize()`, so a failed snapshot is
    never silently lost.

    Args:
        savefun: called as `savefun(path, target, **kwds)` in the thread.
            Defaults to `save_hdf5`.
        **kwds: extra keyword arguments for `savefun`.
    """

    def __init__(self, savefun: SaveFun = save_hdf5, **kwds: Any) -> None:
        super().__init__()
        self.savefun = _check_savefun(savefun)
        self._kwds = kwds
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None

    def __call__(self, filename: str, outdir: str, target: Any) -> None:
        self._wait()
        copy = _HostCopy(target)
        self._worker = threading.Thread(
            target=self._write,
            args=(filename, outdir, copy),
            name=f"ktrainer-snapshot-{filename}",
        )
        self._worker.start()

    def _write(self, filename: str, outdir: str, copy: _HostCopy) -> None:
        try:
            self.save(filename, outdir, copy, self.savefun, **self._kwds)
        except BaseException as error:  # handed to the training thread
            self._error = error

    def _wait(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def finalize(self) -> None:
        """Waits for the write in flight; raises its exception if it failed."""
        self._wait()


class _Recorder(Serializer):
    """Records what a target writes, copying every value to host memory."""

    def __init__(self, ops: list, path: tuple[str, ...]) -> None:
        self._ops = ops
        self._path = path

    def __getitem__(self, key: str) -> _Recorder:
        self._ops.append((self._path, key, _GROUP))
        return _Recorder(self._ops, (*self._path, key))

    def __call__(self, key: str, value: Any) -> Any:
        stored = to_storable(key, value)
        if isinstance(stored, np.ndarray) and (
            stored is value or not stored.flags.owndata
        ):
            # The live array itself, or a view of a live buffer (torch updates
            # its variables in place): copy. An array that owns its data is
            # already a copy, made by the conversion from a tensor.
            stored = np.array(stored, copy=True)
        self._ops.append((self._path, key, stored))
        return value


_GROUP = object()


class _HostCopy:
    """A copy of an object's serialized state in host memory.

    Building it runs the target's `serialize` once, copying every value
    into numpy arrays, strings and `None`. Saving it (e.g.
    `save_hdf5(path, copy)`) replays the same calls, in the same order,
    into the saving serializer, so the file is identical to one saved
    from the target at the moment of the copy. It can only be saved, not
    loaded into.

    Args:
        target: an object `serialize_object` accepts (a trainer, a model...).
    """

    def __init__(self, target: Any) -> None:
        self._ops: list[tuple[tuple[str, ...], str, Any]] = []
        serialize_object(target, _Recorder(self._ops, ()))

    @property
    def nbytes(self) -> int:
        """The bytes of array data held."""
        return sum(v.nbytes for _, _, v in self._ops if isinstance(v, np.ndarray))

    def serialize(self, serializer: Serializer) -> None:
        """Replays the recorded state into `serializer`."""
        if isinstance(serializer, Deserializer):
            raise TypeError(
                "serializer must be a Serializer: a host copy can be saved but "
                f"not loaded into. Received: {type(serializer).__name__}"
            )
        groups: dict[tuple[str, ...], Any] = {(): serializer}
        for path, key, value in self._ops:
            parent = groups[path]
            if value is _GROUP:
                groups[(*path, key)] = parent[key]
            else:
                parent(key, None if value is NONE else value)
