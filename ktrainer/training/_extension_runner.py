"""The extension runner shared by `Trainer` and `callbacks.ExtensionsCallback`.

One implementation of what Chainer's trainer does with extensions:
registration (names, `_1` suffixes, the reserved name `'training'`,
wrapping Keras callbacks), priority order, `initialize`, the calls of an
iteration, `on_error`, `finalize` and `serialize`. It also decides, from
each extension's `model_state` (see `Extension`), when the updater must
write its training state back into the Keras variables.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections import OrderedDict
from typing import Any

from ktrainer.training import extension as extension_module
from ktrainer.training._trigger_util import TriggerLike, get_trigger

MODEL_STATE_ACCESS = ("none", "read", "write", "read_write")


class ExtensionEntry:
    """An extension as registered: with its trigger, priority and options."""

    __slots__ = (
        "call_before_training",
        "extension",
        "model_state",
        "name",
        "priority",
        "trigger",
    )

    def __init__(self, name, extension, priority, trigger, call_before_training):
        self.name = name
        self.extension = extension
        self.trigger = trigger
        self.priority = priority
        self.call_before_training = call_before_training
        self.model_state = model_state_of(extension)


def _plan(entries: list, sync, written) -> list:
    """`(entry, before, after)` per entry: the hooks around its call."""
    plan = []
    for entry in entries:
        access = entry.model_state = model_state_of(entry.extension)
        # Updaters without a cheap write hook sync before writers too.
        before = sync if access != "none" and sync is not None else None
        # Whatever may have assigned variables says so afterwards, so that
        # a sync alone (for a reader) leaves the step's results valid.
        after = written if access in ("write", "read_write") else None
        if access == "write" and written is not None:
            before = None
        plan.append((entry, before, after))
    return plan


def model_state_of(extension) -> str:
    """What `extension` does with model and optimizer variables.

    Its `model_state` when it declares one, else `needs_model_state`
    (`False` means `'none'`, `True` `'read_write'`), else `'read_write'`:
    a plain function may read and write anything.
    """
    access = getattr(extension, "model_state", None)
    if access is None:
        needs = getattr(extension, "needs_model_state", True)
        return "read_write" if needs else "none"
    if access not in MODEL_STATE_ACCESS:
        raise ValueError(
            f"model_state must be one of {MODEL_STATE_ACCESS}. "
            f"Received: model_state={access!r} of extension {extension!r}"
        )
    return access


def _default_name(extension) -> str:
    for attr in ("name", "default_name", "__name__"):
        name = getattr(extension, attr, None)
        if name is not None:
            return name
    raise TypeError(
        "extension has no name: pass name= to extend(). "
        f"Received: extension={extension!r}"
    )


def _is_keras_callback(obj) -> bool:
    import keras

    return isinstance(obj, keras.callbacks.Callback)


class ExtensionRunner:
    """Registered extensions and the order and way they are run."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, ExtensionEntry] = OrderedDict()
        self._plan: list = []
        self._sync = None

    def extend(
        self,
        extension,
        name: str | None = None,
        trigger: TriggerLike = None,
        priority: int | None = None,
        call_before_training: bool = False,
        *,
        inside_fit: bool = False,
    ) -> str:
        """Registers an extension (see `Trainer.extend`); returns its name.

        A Keras callback is wrapped in `KerasCallbackExtension`, except
        `inside_fit`, where `fit` runs it itself.
        """
        if isinstance(extension, type):
            raise TypeError(
                "extension must be an instance (or a function), not a class; "
                f"call it first, e.g. {extension.__name__}(). "
                f"Received: extension={extension!r}"
            )
        if _is_keras_callback(extension):
            if inside_fit:
                raise TypeError(
                    "extension must be a ktrainer extension; pass a Keras "
                    "callback to model.fit(callbacks=[...]) next to the "
                    f"ExtensionsCallback. Received: extension={extension!r}"
                )
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
        while unique in self.entries:
            ordinal += 1
            unique = f"{name}_{ordinal}"
        # A bound method cannot take attributes: it keeps its own name.
        with contextlib.suppress(AttributeError):
            extension.name = unique
        self.entries[unique] = ExtensionEntry(
            unique, extension, priority, trigger, call_before_training
        )
        return unique

    def get_extension(self, name: str):
        """Returns the extension registered under `name`."""
        try:
            return self.entries[name].extension
        except KeyError:
            raise ValueError(
                f"no extension named {name!r}; registered: {list(self.entries)}"
            ) from None

    def sorted_entries(self) -> list[ExtensionEntry]:
        """Entries by descending priority; ties keep registration order."""
        return sorted(self.entries.values(), key=lambda e: e.priority, reverse=True)

    # -- a run ---------------------------------------------------------------

    def start(self, trainer) -> None:
        """Plans the run and calls every `initialize` (priority order).

        An extension whose trigger is `finished` is not initialized.
        """
        updater = trainer.updater
        sync = self._sync = getattr(updater, "sync_model_state", None)
        written = getattr(updater, "model_state_written", None)
        entries = self.sorted_entries()
        # Read again: attributes may be set after extend().
        self._plan = _plan(entries, sync, written)
        for entry, _, _ in self._plan:
            initializer = getattr(entry.extension, "initialize", None)
            if initializer and not getattr(entry.trigger, "finished", False):
                if entry.model_state != "none" and sync is not None:
                    sync()
                initializer(trainer)
        # And once more: `initialize` may narrow what an extension needs
        # (FailOnNonNumber, when the steps check the weights themselves).
        self._plan = _plan(entries, sync, written)

    def run_before_training(self, trainer) -> None:
        """Calls the `call_before_training` extensions, if still at iteration 0."""
        if not trainer.is_before_training:
            return  # Chainer: not again when a run resumes from a snapshot
        for entry, before, after in self._plan:
            if entry.call_before_training:
                if before is not None:
                    before()
                entry.extension(trainer)
                if after is not None:
                    after()

    def hot_plan(self) -> list[tuple[Any, Any, Any, Any]]:
        """`(trigger, extension, before, after)` per entry, for the loop."""
        return [
            (entry.trigger, entry.extension, before, after)
            for entry, before, after in self._plan
        ]

    def run_iteration(self, trainer, plan=None) -> None:
        """Calls every extension whose trigger fires, in priority order."""
        for trigger, extension, before, after in plan or self.hot_plan():
            if trigger(trainer):
                if before is not None:
                    before()
                extension(trainer)
                if after is not None:
                    after()

    def on_error(self, trainer, exc: BaseException, tb) -> None:
        """Calls every `on_error`; an error there is printed, not raised."""
        for entry, _, _ in self._plan:
            handler = getattr(entry.extension, "on_error", None)
            if handler:
                try:
                    handler(trainer, exc, tb)
                except Exception as handler_exc:
                    print(f"Exception in error handler: {handler_exc}", file=sys.stderr)
                    traceback.print_exc()

    def finalize(self, *more, raise_errors: bool = True) -> None:
        """Syncs the state, then calls every `finalize`, then each of `more`.

        Each runs even when an earlier one (or the sync) raised; the first
        error is raised once all have run (when `raise_errors`; otherwise,
        while another exception propagates, it is printed).
        """
        first: BaseException | None = None
        calls = [self._sync] if self._sync is not None else []
        calls += [
            getattr(entry.extension, "finalize", None) for entry, _, _ in self._plan
        ]
        calls += more
        for call in calls:
            if call is None:
                continue
            try:
                call()
            except Exception as exc:
                if not raise_errors:
                    print(f"Exception in finalize: {exc}", file=sys.stderr)
                    traceback.print_exc()
                elif first is None:
                    first = exc
        if first is not None:
            raise first

    def serialize(self, serializer) -> None:
        """Saves or loads each extension's and its trigger's state."""
        ext_serializer = serializer["extensions"]
        trigger_serializer = serializer["extension_triggers"]
        for name, entry in self.entries.items():
            if hasattr(entry.extension, "serialize"):
                entry.extension.serialize(ext_serializer[name])
            if hasattr(entry.trigger, "serialize"):
                entry.trigger.serialize(trigger_serializer[name])
