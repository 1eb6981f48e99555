"""`ExtensionsCallback`: ktrainer extensions run inside `model.fit`."""

from __future__ import annotations

import os
import time
from typing import Any

import keras

from ktrainer import _backend
from ktrainer import reporter as reporter_module
from ktrainer.training._extension_runner import ExtensionRunner
from ktrainer.training._trigger_util import TriggerLike, get_trigger
from ktrainer.training.extensions import _util


class _FitUpdater:
    """The updater as extensions see it: counts from `fit`'s hooks."""

    def __init__(self, model, steps: int | None) -> None:
        self._model = model
        self._steps = steps
        self.iteration = 0
        self.epoch = 0
        self.is_new_epoch = False
        self._position = 0  # batches done in the current epoch
        self._previous_epoch_detail: float | None = None

    @property
    def epoch_detail(self) -> float:
        if not self._steps:
            return float(self.epoch)
        return self.epoch + self._position / self._steps

    @property
    def previous_epoch_detail(self) -> float | None:
        return self._previous_epoch_detail

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._position = 0

    def advance(self, batch: int) -> None:
        # `batch` is the last step of the execution (steps_per_execution).
        self._previous_epoch_detail = self.epoch_detail
        self.iteration += batch + 1 - self._position
        self._position = batch + 1
        self.is_new_epoch = False

    def end_epoch(self) -> None:
        if not self._steps:
            self._steps = self._position  # learned from the first epoch
        self.epoch += 1
        self._position = 0
        self.is_new_epoch = True

    def get_model(self, name: str = "main"):
        _check_name(name, "model")
        return self._model

    def get_optimizer(self, name: str = "main"):
        _check_name(name, "optimizer")
        return self._model.optimizer

    def get_all_models(self) -> dict:
        return {"main": self._model}

    def get_all_optimizers(self) -> dict:
        return {"main": self._model.optimizer}

    def get_iterator(self, name: str = "main"):
        raise RuntimeError(
            "inside model.fit there is no ktrainer iterator; fit reads the "
            f"data itself. Received: get_iterator({name!r})"
        )

    def sync_model_state(self) -> None:
        # fit may keep its training state out of the variables between
        # steps (jax); the seam writes it back and makes fit re-read it.
        _backend.sync_fit_state(self._model)

    def serialize(self, serializer) -> None:
        from ktrainer.serializers import serialize_object

        self.sync_model_state()
        serialize_object(self._model.optimizer, serializer["optimizer:main"])
        serialize_object(self._model, serializer["model:main"])
        self.iteration = serializer("iteration", self.iteration)
        self.epoch = serializer("epoch", self.epoch)


def _check_name(name: str, what: str) -> None:
    if name != "main":
        raise KeyError(f"no {what} named {name!r}; registered: ['main']")


class _FitTrainer:
    """The trainer as extensions see it, inside `model.fit`."""

    def __init__(self, callback: ExtensionsCallback, model, stop_trigger) -> None:
        self._callback = callback
        self.updater = _FitUpdater(model, callback.params.get("steps"))
        self.stop_trigger = stop_trigger
        self.observation: dict[str, Any] = {}
        self.out = callback.out
        self.reporter = reporter_module.Reporter()
        self.reporter.add_observer("main", model)
        self.reporter.add_observers("main", _util.named_sublayers(model))
        self._start_at = time.perf_counter()
        self._final_elapsed_time: float | None = None

    @property
    def elapsed_time(self) -> float:
        if self._final_elapsed_time is not None:
            return self._final_elapsed_time
        return time.perf_counter() - self._start_at

    @property
    def is_before_training(self) -> bool:
        return self.updater.iteration == 0

    def get_extension(self, name: str):
        return self._callback.get_extension(name)

    def serialize(self, serializer) -> None:
        self.updater.serialize(serializer["updater"])
        if hasattr(self.stop_trigger, "serialize"):
            self.stop_trigger.serialize(serializer["stop_trigger"])
        self._callback._runner.serialize(serializer)


class ExtensionsCallback(keras.callbacks.Callback):
    """Runs ktrainer extensions inside `model.fit`, with their triggers.

    Pass it to `model.fit(callbacks=[...])` to get `LogReport`,
    `PrintReport`, `ProgressBar`, the shifts, `observe_lr`,
    `snapshot_object` and your own extensions in a plain `fit` loop. It
    gives extensions a trainer-like object with the Trainer's attributes
    (`updater` with `iteration`, `epoch`, `epoch_detail`,
    `previous_epoch_detail`, `is_new_epoch`, `get_model`,
    `get_optimizer`, ...; `observation`, `out`, `reporter` with the model
    registered as `'main'`, `elapsed_time`, `is_before_training`,
    `get_extension`, `stop_trigger`), so extensions and triggers work
    unchanged.

    Counting follows `fit`'s hooks: `params['steps']` batches per epoch,
    `epoch_detail = epoch + batches_done / steps`. Each batch's `logs` are
    reported under the Trainer's keys (`loss` becomes `'main/loss'`, a
    metric `m` becomes `'main/m'`), then extensions whose triggers fire
    run in descending priority. For the last batch of an epoch they run
    later, in `on_epoch_end`, once `fit` has evaluated on the validation
    data: `val_m` is then reported as `'validation/main/m'`, so
    epoch-triggered extensions see the validation values in the same
    iteration, as with a Trainer and an `Evaluator`. (When `fit` does not
    know `steps`, every batch's extensions run at the next hook, so that
    the epoch's last batch is known.) `initialize` runs at
    `on_train_begin`, `finalize` at `on_train_end`.

    When the stop trigger fires, or an extension sets
    `model.stop_training = True`, `fit` stops after that batch.

    What differs from a Trainer:

    - Keras's batch `logs` are the running means of the metrics since the
      start of the epoch, not the batch's own values, so `'main/loss'` of
      an iteration (and a `LogReport` mean of it) is not the Trainer's
      per-batch value. Epoch-level values of the last iteration equal
      `fit`'s epoch logs.
    - With `steps_per_execution > 1`, hooks fire once per execution: one
      "iteration" here covers several steps (the iteration count still
      counts steps).
    - `call_before_training` is not supported, and extensions are not
      finalized if `fit` raises (Keras calls no hook then). A Keras
      callback is refused: pass it to `fit(callbacks=[...])` itself.
    - Registration, priorities, `initialize`, `finalize` and serialization
      are the Trainer's own (one shared runner), as is `model_state`: an
      extension that only writes variables is synced for like a reader,
      since `fit` re-reads variables only after a sync.
    - `snapshot()` of this object saves the model, its optimizer, the
      counters and the extensions' state, but `fit` cannot resume from it;
      use `snapshot_object(model, ...)` to save models, and a `Trainer`
      for exact resumes.

    Args:
        extensions: extensions to register with their own defaults.
            Defaults to `None`.
        out: the output directory for extensions that write files.
            Defaults to `'result'`.
        stop_trigger: when to stop `fit` early: a trigger or a
            `(period, unit)` tuple. Defaults to `None` (`fit`'s `epochs`).

    Example:

    ```python
    callback = ExtensionsCallback([extensions.LogReport(), extensions.PrintReport(
        ["epoch", "main/loss", "validation/main/loss"])])
    model.fit(x, y, validation_data=(xv, yv), epochs=5, callbacks=[callback])
    ```
    """

    def __init__(
        self,
        extensions=None,
        out: str | os.PathLike = "result",
        stop_trigger: TriggerLike = None,
    ) -> None:
        super().__init__()
        self.out = os.fspath(out)
        self._stop_trigger = None if stop_trigger is None else get_trigger(stop_trigger)
        self._runner = ExtensionRunner()
        self._trainer: _FitTrainer | None = None
        self._pending = False
        self._plan: list = []
        for ext in extensions or ():
            self.extend(ext)

    def extend(
        self,
        extension,
        name: str | None = None,
        trigger: TriggerLike = None,
        priority: int | None = None,
    ) -> None:
        """Registers an extension, as `Trainer.extend` does.

        Args:
            extension: an `Extension` or a function of the trainer.
            name: the name; a clash gets a `_1`, `_2`, ... suffix.
                Defaults to the extension's `name`, `default_name` or
                `__name__`.
            trigger: when to run it. Defaults to the extension's
                `trigger`, or every iteration.
            priority: the order within an iteration (higher first).
                Defaults to the extension's `priority`, or
                `PRIORITY_READER`.
        """
        self._runner.extend(extension, name, trigger, priority, inside_fit=True)

    def get_extension(self, name: str):
        """Returns the extension registered under `name`."""
        return self._runner.get_extension(name)

    # -- fit's hooks ---------------------------------------------------------

    def on_train_begin(self, logs=None) -> None:
        model = self.model
        stop_trigger = self._stop_trigger
        if stop_trigger is None:
            stop_trigger = get_trigger((self.params.get("epochs", 1), "epoch"))
        trainer = self._trainer = _FitTrainer(self, model, stop_trigger)
        os.makedirs(self.out, exist_ok=True)
        self._pending = False
        self._runner.start(trainer)
        self._plan = self._runner.hot_plan()

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._flush()
        self._trainer.updater.start_epoch(epoch)

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        self._flush()

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._flush()
        trainer = self._trainer
        updater = trainer.updater
        updater.advance(batch)
        trainer.observation = {
            ("main/" + key): value for key, value in (logs or {}).items()
        }
        self._pending = True
        steps = updater._steps
        if steps and updater._position < steps:
            self._flush()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if not self._pending:
            return
        trainer = self._trainer
        for key, value in (logs or {}).items():
            if key.startswith("val_"):
                trainer.observation["validation/main/" + key[4:]] = value
        trainer.updater.end_epoch()
        self._flush()

    def on_train_end(self, logs=None) -> None:
        self._flush()
        trainer = self._trainer
        if trainer is None:
            return
        trainer._final_elapsed_time = trainer.elapsed_time
        self._runner.finalize()

    def _flush(self) -> None:
        """Runs the extensions of the pending iteration, if any."""
        if not self._pending:
            return
        self._pending = False
        trainer = self._trainer
        with trainer.reporter.scope(trainer.observation):
            self._runner.run_iteration(trainer, self._plan)
        if trainer.stop_trigger(trainer):
            self.model.stop_training = True
