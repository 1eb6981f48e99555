"""`snapshot` and `snapshot_object`: save training state to resume from."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import string
import warnings
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from ktrainer import distributed
from ktrainer.serializers import HDF5Deserializer, load_hdf5, load_npz, save_npz
from ktrainer.training import extension
from ktrainer.training.extensions import snapshot_writers

FilenameLike = str | Callable[[Any], str]

logger = logging.getLogger("ktrainer.training.extensions.snapshot")
"""Where `autoload` says which snapshot it loaded (level INFO).

Show it with `logging.basicConfig(level=logging.INFO)`; silence it with
`logging.getLogger("ktrainer").setLevel(logging.WARNING)`.
"""


def snapshot(
    savefun: Callable[..., Any] | None = None,
    filename: FilenameLike = "snapshot_iter_{.updater.iteration}",
    *,
    target: Any = None,
    condition: Callable[[], bool] | None = None,
    writer: Callable[[str, str, Any], None] | None = None,
    snapshot_on_error: bool = False,
    n_retains: int = -1,
    autoload: bool = False,
) -> _Snapshot:
    """Returns an extension that saves the whole trainer, to resume from.

    Each snapshot holds everything `Trainer.serialize` writes: the model
    and optimizer variables (with `iterations`, the learning rate and the
    random layers' seed states), the iterators' positions and shuffle
    states, the iteration count, and the state of every trigger and
    stateful extension. Loading it into a freshly built trainer with
    `load_hdf5(path, trainer)`, or with `autoload=True`, continues
    training exactly where the snapshot was taken.

    The extension runs every epoch by default, with priority -100, after
    every other extension, so a snapshot sees the iteration's final state.
    Files are written to `trainer.out`, atomically (see `snapshot_writers`):
    under a temporary name `.<name>.<8 hex digits>.tmp`, renamed when
    complete. A run killed mid-write leaves such a file behind; when the
    extension initializes (at `trainer.run()`), it removes the temporary
    files of its own snapshots (those whose `<name>` matches `filename`)
    and nothing else. `PreemptionHandler` writes a last snapshot through
    this extension when the job is told to stop.

    When `filename` is a format string, `initialize` formats it once with
    the trainer, so a field the trainer lacks (`'{.updater.iter}'`) is an
    error naming `filename` before training starts, not at the first save.

    Args:
        savefun: called as `savefun(path, trainer)`; only without
            `writer`. Defaults to `None` (`save_hdf5`).
        filename: the file's name, a format string filled by
            `filename.format(trainer)`, or a callable of the trainer.
            Defaults to `'snapshot_iter_{.updater.iteration}'`.
        target: the object to save instead of the trainer.
            Defaults to `None` (the trainer).
        condition: a function of no arguments; a snapshot is written only
            when it returns `True`. Defaults to `None` (always).
        writer: a `snapshot_writers.Writer` (or any callable
            `writer(filename, outdir, target)`), e.g. a `ThreadWriter` to
            write in the background. Defaults to `None` (a `SimpleWriter`
            with `savefun`).
        snapshot_on_error: also write a snapshot when the training loop
            raises. Defaults to `False`.
        n_retains: after each write, keep only this many of the newest
            files that match `filename` (a format string) in `trainer.out`
            and remove the older ones; `-1` (or any value below 1) keeps
            all. Defaults to `-1`.
        autoload: when training starts, load the newest snapshot in
            `trainer.out` whose name matches `filename`, skipping with a
            warning any that is damaged or truncated (a failed checksum
            included); with none, training starts fresh. The path and the
            iteration and epoch it resumes from are logged at level INFO
            to the logger `'ktrainer.training.extensions.snapshot'`.
            Defaults to `False`.

    Returns:
        The snapshot extension.

    Example:

    ```python
    trainer.extend(
        extensions.snapshot(n_retains=2, autoload=True),
        trigger=(1000, "iteration"),
    )
    trainer.run()  # resumes from the newest snapshot in trainer.out, if any
    ```
    """
    if savefun is not None and writer is not None:
        raise TypeError(
            "savefun and writer cannot both be given; pass savefun to the "
            f"writer instead. Received: savefun={savefun!r}, writer={writer!r}"
        )
    if writer is None:
        writer = snapshot_writers.SimpleWriter(*(() if savefun is None else (savefun,)))
    return _Snapshot(
        target=target,
        condition=condition,
        writer=writer,
        filename=filename,
        snapshot_on_error=snapshot_on_error,
        n_retains=n_retains,
        autoload=autoload,
    )


def snapshot_object(
    target: Any,
    filename: FilenameLike,
    savefun: Callable[..., Any] | None = None,
    *,
    condition: Callable[[], bool] | None = None,
    writer: Callable[[str, str, Any], None] | None = None,
    snapshot_on_error: bool = False,
    n_retains: int = -1,
    autoload: bool = False,
) -> _Snapshot:
    """Returns an extension that saves one object, such as the model.

    The same as `snapshot(savefun, filename, target=target, ...)`; see
    `snapshot` for the arguments. A model snapshot taken this way loads
    with `load_hdf5(path, model)`.

    Example:

    ```python
    trainer.extend(
        extensions.snapshot_object(model, "model_epoch_{.updater.epoch}"),
        trigger=(1, "epoch"),
    )
    ```
    """
    return snapshot(
        savefun,
        filename,
        target=target,
        condition=condition,
        writer=writer,
        snapshot_on_error=snapshot_on_error,
        n_retains=n_retains,
        autoload=autoload,
    )


def _always_true() -> bool:
    return True


class _Snapshot(extension.Extension):
    """Writes snapshots of the trainer (or of a target) and loads them back.

    Built by `snapshot` and `snapshot_object`, whose docstrings describe
    the arguments. Default trigger: `(1, 'epoch')`; priority: -100, so it
    runs after every other extension of an iteration. The extension keeps
    no state of its own in a snapshot.

    Attributes:
        loaded_from: the path that `autoload` loaded in the last
            `initialize`, or `None` when it loaded nothing.
    """

    trigger = (1, "epoch")
    priority = -100
    needs_model_state = True

    def __init__(
        self,
        target: Any = None,
        condition: Callable[[], bool] | None = None,
        writer: Callable[[str, str, Any], None] | None = None,
        filename: FilenameLike = "snapshot_iter_{.updater.iteration}",
        snapshot_on_error: bool = False,
        n_retains: int = -1,
        autoload: bool = False,
    ) -> None:
        if condition is not None and not callable(condition):
            raise TypeError(
                "condition must be a callable of no arguments or None. "
                f"Received: condition={condition!r}"
            )
        if writer is not None and not callable(writer):
            raise TypeError(
                "writer must be a callable writer(filename, outdir, target), "
                f"such as a snapshot_writers.Writer. Received: writer={writer!r}"
            )
        self._pattern = _check_filename(filename)
        for name, value in (
            ("snapshot_on_error", snapshot_on_error),
            ("autoload", autoload),
        ):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool. Received: {name}={value!r}")
        if isinstance(n_retains, bool) or not isinstance(n_retains, int):
            raise TypeError(
                "n_retains must be an int (-1 keeps every snapshot). "
                f"Received: n_retains={n_retains!r}"
            )
        if self._pattern is None and (autoload or n_retains > 0):
            raise ValueError(
                "filename must be a format string for autoload=True or "
                "n_retains > 0, so that earlier snapshots can be found by "
                f"name. Received: filename={filename!r}"
            )
        self._target = target
        self.filename = filename
        self.condition = _always_true if condition is None else condition
        self.writer = snapshot_writers.SimpleWriter() if writer is None else writer
        self._snapshot_on_error = bool(snapshot_on_error)
        self.n_retains = n_retains
        self.autoload = bool(autoload)
        self.loaded_from: str | None = None
        self._outdir: str | None = None
        self._last_written: int | None = None

    def initialize(self, trainer) -> None:
        """Checks `filename`, removes stale temporary files, autoloads.

        Also sets up `n_retains` for the writer.

        Raises:
            ValueError: if `filename` names a field the trainer lacks.
        """
        self._outdir = trainer.out
        self.loaded_from = None
        self._last_written = None
        self._check_fields(trainer)
        if self._pattern is not None:
            _remove_temporary_files(self._pattern, trainer.out)
        if self.autoload:
            target = trainer if self._target is None else self._target
            self.loaded_from = self._autoload(trainer.out, target)
            if self.loaded_from is not None:
                _log_resume(self.loaded_from, target)
        add_hook = getattr(self.writer, "_add_cleanup_hook", None)
        if add_hook is not None and self.n_retains > 0:
            add_hook(self._remove_stale_snapshots)

    def __call__(self, trainer) -> None:
        if self.condition():
            self._make_snapshot(trainer)

    def write_now(self, trainer) -> None:
        """Writes a snapshot now, unless one was written this iteration.

        It goes through the extension's own writer, file name and
        `n_retains`; `condition` is not consulted. `PreemptionHandler`
        calls this before the job exits.
        """
        if self._last_written != trainer.updater.iteration:
            self._make_snapshot(trainer)

    def _check_fields(self, trainer) -> None:
        if callable(self.filename):
            return
        try:
            self.filename.format(trainer)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
            raise ValueError(
                "filename must be a format string whose fields the trainer "
                f"has, e.g. '{{.updater.iteration}}', but formatting it failed "
                f"({type(error).__name__}: {error}). Received: "
                f"filename={self.filename!r}"
            ) from None

    def on_error(self, trainer, exc: BaseException, tb) -> None:
        if self._snapshot_on_error:
            self._make_snapshot(trainer)

    def finalize(self) -> None:
        finalize = getattr(self.writer, "finalize", None)
        if finalize is not None:
            finalize()

    def _make_snapshot(self, trainer) -> None:
        target = trainer if self._target is None else self._target
        if callable(self.filename):
            filename = self.filename(trainer)
        else:
            filename = self.filename.format(trainer)
        if distributed.is_chief():  # in a distributed run only the chief writes
            self.writer(filename, trainer.out, target)
        self._last_written = trainer.updater.iteration

    def _autoload(self, outdir: str, target: Any) -> str | None:
        load, is_damaged = _loader(getattr(self.writer, "savefun", None))
        for name in reversed(_find_snapshots(self._pattern, outdir)):
            path = os.path.join(outdir, name)
            try:
                load(path, target)
            except FileNotFoundError:  # removed meanwhile
                continue
            except ValueError as error:
                if not is_damaged(path):
                    raise  # a readable file that does not fit the target
                warnings.warn(
                    f"autoload skipped the snapshot {path!r}: it is damaged or "
                    "truncated, so the next newest one is tried. "
                    + " ".join(line.strip() for line in str(error).splitlines()[:2]),
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            return path
        return None

    def _remove_stale_snapshots(self) -> None:
        outdir = self._outdir
        if outdir is None:
            return
        names = _find_snapshots(self._pattern, outdir)
        for name in names[: max(len(names) - self.n_retains, 0)]:
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                os.remove(os.path.join(outdir, name))


def _check_filename(filename: Any) -> re.Pattern | None:
    """Validates `filename`; returns the pattern of the names it formats to."""
    if callable(filename):
        return None
    if not isinstance(filename, str):
        raise TypeError(
            "filename must be a format string or a callable of the trainer. "
            f"Received: filename={filename!r}"
        )
    if not filename:
        raise ValueError("filename must not be empty. Received: filename=''")
    try:
        parts = list(string.Formatter().parse(filename))
    except ValueError as error:
        raise ValueError(
            f"filename must be a valid format string ({error}). "
            f"Received: filename={filename!r}"
        ) from None
    regex = "".join(
        re.escape(literal) + ("" if field is None else ".+?")
        for literal, field, _, _ in parts
    )
    if os.sep in regex or (os.altsep and os.altsep in regex):
        raise ValueError(
            "filename must name a file directly in trainer.out, without a "
            f"directory. Received: filename={filename!r}"
        )
    return re.compile(regex)


_NUMBER = re.compile(r"(\d+)", re.ASCII)


def _natural_key(name: str) -> list:
    # 'snapshot_iter_10' sorts after 'snapshot_iter_9'.
    return [int(p) if p.isdigit() else p for p in _NUMBER.split(name)]


def _find_snapshots(pattern: re.Pattern, outdir: str) -> list[str]:
    """Names in `outdir` that `pattern` matches, oldest first.

    Sorted by modification time, as Chainer does; files written within
    the clock's resolution are ordered by the numbers in their names.
    """
    try:
        entries = list(os.scandir(outdir))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file():
                continue
            mtime = entry.stat().st_mtime_ns
        except FileNotFoundError:  # removed meanwhile
            continue
        found.append((mtime, _natural_key(entry.name), entry.name))
    return [name for _, _, name in sorted(found)]


def _temporary_pattern(pattern: re.Pattern) -> re.Pattern:
    # The names `atomic_write` gives: '.<name>.<8 hex digits>.tmp', and
    # '..<name>.<hex>.tmp.<hex>.tmp' when a savefun that writes atomically
    # itself is given that temporary path by the writer.
    return re.compile(r"\.\.?(?:" + pattern.pattern + r")\.[0-9a-f]{8}\.tmp")


def _remove_temporary_files(pattern: re.Pattern, outdir: str) -> list[str]:
    """Removes the leftover temporary files of snapshots named by `pattern`."""
    temporary = _temporary_pattern(pattern)
    try:
        entries = list(os.scandir(outdir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        if temporary.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)
                removed.append(entry.name)
    return removed


def _log_resume(path: str, target: Any) -> None:
    updater = getattr(target, "updater", None)
    iteration = getattr(updater, "iteration", None)
    if iteration is None:
        logger.info("snapshot autoload: loaded %r", path)
        return
    logger.info(
        "snapshot autoload: resuming from %r at iteration %d, epoch %s",
        path,
        iteration,
        getattr(updater, "epoch", "?"),
    )


def _hdf5_is_damaged(path: str) -> bool:
    """Whether any entry of `path` cannot be read or fails its checksum."""
    try:
        with h5py.File(path, "r") as f:
            reader = HDF5Deserializer(f)
            keys = reader._keys()
            for key in keys:
                reader._read(key)
            # An entry its checksum list names but the file lacks.
            if any(not reader._has(k.lstrip("/")) for k in reader._digests.get() or ()):
                return True
    except Exception:
        return True
    return False


def _npz_is_damaged(path: str) -> bool:
    try:
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                archive[name]
    except Exception:
        return True
    return False


def _loader(savefun: Any) -> tuple[Callable, Callable[[str], bool]]:
    """The load function matching `savefun`, and its damage check."""
    if savefun is save_npz:
        return load_npz, _npz_is_damaged
    return load_hdf5, _hdf5_is_damaged
