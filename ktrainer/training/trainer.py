"""The training loop: an updater plus triggered extensions."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import warnings
from collections import OrderedDict
from typing import Any

from ktrainer import reporter as reporter_module
from ktrainer.training import extension as extension_module
from ktrainer.training._trigger_util import TriggerLike, get_trigger


class _ExtensionEntry:
    """An extension as registered: with its trigger, priority and options."""

    __slots__ = ("call_before_training", "extension", "priority", "trigger")

    def __init__(self, extension, priority, trigger, call_before_training):
        self.extension = extension
        self.trigger = trigger
        self.priority = priority
        self.call_before_training = call_before_training


def _default_name(extension) -> str:
    for attr in ("name", "default_name", "__name__"):
        name = getattr(extension, attr, None)
        if name is not None:
            return name
    raise TypeError(
        "extension has no name: pass name= to extend(). "
        f"Received: extension={extension!r}"
    )


class Trainer:
    """Runs an updater and a set of extensions until a stop trigger fires.

    Each iteration calls `updater.update()` and then every extension whose
    trigger fires, in descending priority (ties in registration order).
    Observations reported during the iteration land in `observation`,
    a fresh dict each iteration, through `reporter`, where each model of
    the updater is registered as an observer under its name (`'main'`).

    If the loop raises, each extension's `on_error(trainer, exc, tb)` runs,
    then `finalize()` of every extension and of the updater, and the
    exception propagates. `run()` may be called only once.

    The trainer's state (the updater's, the stop trigger's, each
    extension's and its trigger's, and the elapsed time) takes part in
    serialization, so `save_hdf5(path, trainer)` suspends training and
    `load_hdf5(path, trainer)` on a freshly built trainer resumes it.

    Args:
        updater: the `Updater` that performs each training step.
        stop_trigger: when to stop; a trigger or a `(period, unit)` tuple.
            Defaults to `None` (never stop on its own).
        out: output directory for extensions that write files.
            Defaults to `'result'`.
        extensions: extensions to register right away, with their own
            defaults. Defaults to `None`.

    Attributes:
        updater: the updater.
        stop_trigger: the trigger that ends the loop.
        observation: the observations of the current iteration.
        out: the output directory.
        reporter: the `Reporter` the loop reports through.
    """

    def __init__(
        self,
        updater,
        stop_trigger: TriggerLike = None,
        out: str | os.PathLike = "result",
        extensions=None,
    ) -> None:
        if not callable(getattr(updater, "update", None)):
            raise TypeError(
                "updater must be an Updater with an update() method. "
                f"Received: updater={updater!r}"
            )
        self.updater = updater
        # Chainer: no stop trigger means "never stop".
        self.stop_trigger = (
            (lambda trainer: False)
            if stop_trigger is None
            else get_trigger(stop_trigger)
        )
        self.observation: dict[str, Any] = {}
        self.out = os.fspath(out)
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise ValueError(
                "out must name a directory (or a path to create one at), "
                f"not an existing file. Received: out={self.out!r}"
            )
        self._done = False
        self._start_at: float | None = None
        self._snapshot_elapsed_time = 0.0
        self._final_elapsed_time: float | None = None
        self._extensions: OrderedDict[str, _ExtensionEntry] = OrderedDict()

        self.reporter = reporter_module.Reporter()
        for name, model in updater.get_all_models().items():
            self.reporter.add_observer(name, model)
            self.reporter.add_observers(name, _named_sublayers(model))
        updater.connect_trainer(self)

        for ext in extensions or ():
            self.extend(ext)

    @property
    def elapsed_time(self) -> float:
        """Seconds spent in `run()`, including the time before a resume."""
        if self._done:
            return self._final_elapsed_time
        if self._start_at is None:
            raise RuntimeError(
                "elapsed_time is defined once training has started: "
                "call trainer.run() first."
            )
        return time.perf_counter() - self._start_at + self._snapshot_elapsed_time

    @property
    def is_before_training(self) -> bool:
        """True until the first update of this (possibly resumed) run."""
        return self.updater.iteration == 0

    def extend(
        self,
        extension,
        name: str | None = None,
        trigger: TriggerLike = None,
        priority: int | None = None,
        *,
        call_before_training: bool = False,
        **kwargs,
    ) -> None:
        """Registers an extension.

        Args:
            extension: an `Extension`, a function of the trainer (possibly
                decorated by `make_extension`) or a `keras.callbacks.Callback`
                (wrapped in `KerasCallbackExtension`).
            name: the name; a clash gets a `_1`, `_2`, ... suffix.
                Defaults to the extension's `name`, `default_name` or
                `__name__`.
            trigger: when to run it. Defaults to the extension's `trigger`,
                or every iteration.
            priority: the order within an iteration (higher first).
                Defaults to the extension's `priority`, or
                `PRIORITY_READER`.
            call_before_training: also run it once before the first update,
                when the trainer `is_before_training` (not again when it
                resumes from a snapshot taken later). Defaults to `False`.
        """
        if kwargs:
            raise TypeError(
                f"extend() got unexpected keyword arguments. Received: {sorted(kwargs)}"
            )
        if isinstance(extension, type):
            raise TypeError(
                "extension must be an instance (or a function), not a class; "
                f"call it first, e.g. {extension.__name__}(). "
                f"Received: extension={extension!r}"
            )
        if _is_keras_callback(extension):
            from ktrainer.callbacks import KerasCallbackExtension

            extension = KerasCallbackExtension(extension)
        if not callable(extension):
            raise TypeError(
                "extension must be callable with the trainer. "
                f"Received: extension={extension!r}"
            )
        if name is None:
            name = _default_name(extension)
        if not isinstance(name, str):
            raise TypeError(f"name must be a str. Received: name={name!r}")
        if name == "training":
            raise ValueError("name 'training' is reserved. Received: name='training'")
        if trigger is None:
            trigger = getattr(extension, "trigger", (1, "iteration"))
        trigger = get_trigger(trigger)
        if priority is None:
            priority = getattr(extension, "priority", extension_module.PRIORITY_READER)

        unique, ordinal = name, 0
        while unique in self._extensions:
            ordinal += 1
            unique = f"{name}_{ordinal}"
        # A bound method cannot take attributes: it keeps its own name.
        with contextlib.suppress(AttributeError):
            extension.name = unique
        self._extensions[unique] = _ExtensionEntry(
            extension, priority, trigger, call_before_training
        )

    def get_extension(self, name: str):
        """Returns the extension registered under `name`."""
        try:
            return self._extensions[name].extension
        except KeyError:
            raise ValueError(
                f"no extension named {name!r}; registered: {list(self._extensions)}"
            ) from None

    def _sorted_entries(self) -> list[tuple[str, _ExtensionEntry]]:
        # sorted() is stable, so equal priorities keep registration order.
        return sorted(
            self._extensions.items(), key=lambda kv: kv[1].priority, reverse=True
        )

    def run(self, show_loop_exception_msg: bool = True) -> None:
        """Runs the training loop until the stop trigger fires.

        Args:
            show_loop_exception_msg: print the loop's exception to stderr
                before finalizing, so a hanging finalizer does not hide it.
                Defaults to `True`.
        """
        if self._done:
            raise RuntimeError(
                "Trainer.run() can run only once; build a new Trainer "
                "(and load a snapshot) to train further."
            )
        try:
            os.makedirs(self.out, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ValueError(
                "out must name a directory (or a path to create one at), "
                f"not an existing file. Received: out={self.out!r}"
            ) from None
        entries = self._sorted_entries()
        updater = self.updater
        sync = getattr(updater, "sync_model_state", None)
        deferred = getattr(updater, "deferred_sync", contextlib.nullcontext)
        self._start_at = time.perf_counter()

        try:
            for _, entry in entries:
                initializer = getattr(entry.extension, "initialize", None)
                if initializer and not getattr(entry.trigger, "finished", False):
                    if sync is not None and _needs_state(entry.extension):
                        sync()
                    initializer(self)

            self.observation = {}
            with self.reporter.scope(self.observation):
                for _, entry in entries:
                    # Chainer: only before the first update, not on a resume.
                    if entry.call_before_training and self.is_before_training:
                        if sync is not None and _needs_state(entry.extension):
                            sync()
                        entry.extension(self)

            with deferred():
                self._loop(entries, sync)
        except Exception as exc:
            tb = sys.exc_info()[2]
            if show_loop_exception_msg:
                print(f"Exception in main training loop: {exc}", file=sys.stderr)
                print(
                    "Will finalize trainer extensions and updater before "
                    "reraising the exception.",
                    file=sys.stderr,
                )
            for _, entry in entries:
                handler = getattr(entry.extension, "on_error", None)
                if handler:
                    try:
                        handler(self, exc, tb)
                    except Exception as handler_exc:
                        print(
                            f"Exception in error handler: {handler_exc}",
                            file=sys.stderr,
                        )
                        traceback.print_exc()
            raise
        finally:
            if sync is not None:
                sync()
            for _, entry in entries:
                finalize = getattr(entry.extension, "finalize", None)
                if finalize:
                    finalize()
            updater.finalize()

        self._final_elapsed_time = self.elapsed_time
        self._done = True

    def _loop(self, entries, sync) -> None:
        # The hot path: keep per-iteration work to attribute lookups and calls.
        update = self.updater.update
        reporter = self.reporter
        stop_trigger = self.stop_trigger
        plan = [
            (
                entry.trigger,
                entry.extension,
                sync is not None and _needs_state(entry.extension),
            )
            for _, entry in entries
        ]
        if stop_trigger(self):
            updater = self.updater
            warnings.warn(
                "Trainer.run() trained nothing: the stop trigger had already "
                f"fired at iteration {updater.iteration} (epoch_detail="
                f"{getattr(updater, 'epoch_detail', '?')}), e.g. because the "
                "loaded snapshot is past it.",
                stacklevel=3,
            )
            return
        while True:
            self.observation = observation = {}
            with reporter.scope(observation):
                update()
                for trigger, extension, needs_state in plan:
                    if trigger(self):
                        if needs_state:
                            sync()
                        extension(self)
            if stop_trigger(self):
                return

    def serialize(self, serializer) -> None:
        """Saves or loads the whole training state (see the class doc)."""
        from ktrainer.serializers import Serializer

        self.updater.serialize(serializer["updater"])
        if hasattr(self.stop_trigger, "serialize"):
            self.stop_trigger.serialize(serializer["stop_trigger"])
        ext_serializer = serializer["extensions"]
        trigger_serializer = serializer["extension_triggers"]
        for name, entry in self._extensions.items():
            if hasattr(entry.extension, "serialize"):
                entry.extension.serialize(ext_serializer[name])
            if hasattr(entry.trigger, "serialize"):
                entry.trigger.serialize(trigger_serializer[name])
        if isinstance(serializer, Serializer):
            elapsed = (
                self._snapshot_elapsed_time
                if self._start_at is None
                else self.elapsed_time
            )
            serializer("_snapshot_elapsed_time", elapsed)
        else:
            self._snapshot_elapsed_time = float(
                serializer("_snapshot_elapsed_time", self._snapshot_elapsed_time)
            )


def _needs_state(extension) -> bool:
    return getattr(extension, "needs_model_state", True)


def _is_keras_callback(obj) -> bool:
    import keras

    return isinstance(obj, keras.callbacks.Callback)


def _named_sublayers(model):
    """`(path, layer)` pairs for the model's nested layers, as observers."""
    named = []
    layers = getattr(model, "_flatten_layers", None)
    if layers is None:
        return named
    for layer in layers(include_self=False, recursive=False):
        named.append(("/" + layer.name, layer))
        named.extend(
            ("/" + layer.name + sub, sublayer)
            for sub, sublayer in _named_sublayers(layer)
        )
    return named
