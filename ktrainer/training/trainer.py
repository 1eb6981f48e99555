"""The training loop: an updater plus triggered extensions."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from typing import Any

from ktrainer import reporter as reporter_module
from ktrainer.training._extension_runner import ExtensionRunner
from ktrainer.training._fusion import plan_steps, split_fused
from ktrainer.training._trigger_util import TriggerLike, get_trigger


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
        max_fused_steps: the most iterations the trainer may run as one
            compiled call of the updater (keyword-only). Whenever the
            triggers tell that no extension must run for the next `k`
            iterations, those `k` (at most this many) run in one call of
            `updater.update_many(k)`; every extension still runs at
            exactly the iterations it runs at unfused, and logs are the
            same. A trigger that cannot tell how long until it fires (a
            plain function, `TimeTrigger`) keeps the run unfused while it
            is attached. Defaults to `1` (one iteration per call).

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
        *,
        max_fused_steps: int = 1,
    ) -> None:
        if not callable(getattr(updater, "update", None)):
            raise TypeError(
                "updater must be an Updater with an update() method. "
                f"Received: updater={updater!r}"
            )
        if isinstance(max_fused_steps, bool) or not isinstance(max_fused_steps, int):
            raise TypeError(
                "max_fused_steps must be a positive int. "
                f"Received: max_fused_steps={max_fused_steps!r}"
            )
        if max_fused_steps < 1:
            raise ValueError(
                "max_fused_steps must be a positive int. "
                f"Received: max_fused_steps={max_fused_steps!r}"
            )
        if max_fused_steps > 1 and not callable(getattr(updater, "update_many", None)):
            raise TypeError(
                "max_fused_steps above 1 needs an updater with update_many(k) "
                "(StandardUpdater and its subclasses have it). Received: "
                f"max_fused_steps={max_fused_steps} with updater={updater!r}"
            )
        self.updater = updater
        self.max_fused_steps = max_fused_steps
        # Chainer: no stop trigger means "never stop" (get_trigger(None)).
        self.stop_trigger = get_trigger(stop_trigger)
        self.observation: dict[str, Any] = {}
        self.fused_observation: dict[str, Any] | None = None
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
        self._runner = ExtensionRunner()

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
        self._runner.extend(extension, name, trigger, priority, call_before_training)

    def get_extension(self, name: str):
        """Returns the extension registered under `name`."""
        return self._runner.get_extension(name)

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
        updater = self.updater
        runner = self._runner
        deferred = getattr(updater, "deferred_sync", contextlib.nullcontext)
        self._start_at = time.perf_counter()
        failed = False
        try:
            runner.start(self)
            self.observation = {}
            with self.reporter.scope(self.observation):
                runner.run_before_training(self)
            with deferred():
                self._loop(runner.hot_plan())
        except Exception as exc:
            failed = True
            if show_loop_exception_msg:
                print(f"Exception in main training loop: {exc}", file=sys.stderr)
                print(
                    "Will finalize trainer extensions and updater before "
                    "reraising the exception.",
                    file=sys.stderr,
                )
            runner.on_error(self, exc, sys.exc_info()[2])
            raise
        except BaseException:
            failed = True
            raise
        finally:
            runner.finalize(updater.finalize, raise_errors=not failed)

        self._final_elapsed_time = self.elapsed_time
        self._done = True

    def _loop(self, plan) -> None:
        # The hot path: keep per-iteration work to attribute lookups and calls.
        update = self.updater.update
        reporter = self.reporter
        stop_trigger = self.stop_trigger
        if stop_trigger(self) or self._past_training_length():
            updater = self.updater
            detail = getattr(updater, "epoch_detail", None)
            detail = "?" if detail is None else f"{float(detail):.4g}"
            warnings.warn(
                "Trainer.run() trained nothing: the stop trigger had already "
                f"fired at iteration {updater.iteration} (epoch {detail}), "
                "e.g. because the loaded snapshot is at or past it.",
                stacklevel=3,
            )
            return
        fused = self.max_fused_steps > 1
        entries = [(trigger, extension) for trigger, extension, _, _ in plan]
        while True:
            self.observation = observation = {}
            with reporter.scope(observation):
                steps = plan_steps(self, entries, self.max_fused_steps) if fused else 1
                if steps > 1:
                    self.updater.update_many(steps)
                    # In place: extensions report into this same dict.
                    last, self.fused_observation = split_fused(observation, steps)
                    observation.clear()
                    observation.update(last)
                else:
                    self.fused_observation = None
                    update()
                for trigger, extension, before, after in plan:
                    if trigger(self):
                        if before is not None:
                            before()
                        extension(self)
                        if after is not None:
                            after()
            if stop_trigger(self):
                return

    def _past_training_length(self) -> bool:
        """Whether the updater is already past the stop trigger's length.

        An interval stop trigger fires when its count crosses a multiple
        of its period, so a run resumed from a snapshot beyond that point
        (a 10-epoch run given an epoch-12 snapshot) would go on to the
        next multiple; it trains nothing instead, with the warning.
        """
        length = getattr(self.stop_trigger, "get_training_length", None)
        if length is None:
            return False
        period, unit = length()
        updater = self.updater
        current = updater.iteration if unit == "iteration" else updater.epoch_detail
        return current > 0 and current >= period

    def serialize(self, serializer) -> None:
        """Saves or loads the whole training state (see the class doc)."""
        from ktrainer.serializers import Serializer

        self.updater.serialize(serializer["updater"])
        if hasattr(self.stop_trigger, "serialize"):
            self.stop_trigger.serialize(serializer["stop_trigger"])
        self._runner.serialize(serializer)
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
