"""`KerasCallbackExtension`: a Keras callback run by a `Trainer`."""

from __future__ import annotations

import math
from typing import Any

import keras

from ktrainer import reporter as reporter_module
from ktrainer.training import extension

_BASE = keras.callbacks.Callback


def _keras_name(key: str) -> str | None:
    """The Keras log name of a ktrainer observation key, or `None` to skip it.

    `'main/x'` becomes `x`, `'validation/main/x'` becomes `val_x`, a key
    without `/` (e.g. `'lr'` from `observe_lr`) stays as it is.
    """
    if key.startswith("main/"):
        return key[5:]
    if key.startswith("validation/main/"):
        return "val_" + key[16:]
    if "/" not in key:
        return key
    return None


def _overrides(callback: keras.callbacks.Callback, *names: str) -> bool:
    """Whether the callback has its own version of one of the hooks `names`."""
    own = vars(callback)  # e.g. LambdaCallback sets hooks on the instance
    cls = type(callback)
    return any(
        name in own or getattr(cls, name) is not getattr(_BASE, name) for name in names
    )


class _StopOnFlag:
    """A stop trigger that also fires once `model.stop_training` is set.

    The Trainer's loop asks only its stop trigger whether to go on, so a
    callback that sets `model.stop_training` (as `EarlyStopping` does in
    `fit`) ends training through this wrapper. It is asked right before
    each update, so it also runs the callback's "begin" hooks there.
    Everything else (`serialize`, `get_training_length`, ...) is the
    wrapped trigger's.
    """

    def __init__(self, trigger, model, before_update) -> None:
        self._trigger = trigger
        self._model = model
        self._before_update = before_update

    def __call__(self, trainer) -> bool:
        if self._trigger(trainer) or getattr(self._model, "stop_training", False):
            return True
        self._before_update(trainer)
        return False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_trigger", "_model", "_before_update"):
            raise AttributeError(name)
        return getattr(self._trigger, name)


class KerasCallbackExtension(extension.Extension):
    """Runs a `keras.callbacks.Callback` inside a `Trainer`, as `model.fit` would.

    `trainer.extend(callback)` wraps a Keras callback in this extension, so
    `CSVLogger`, `EarlyStopping`, `ReduceLROnPlateau`, `ModelCheckpoint`,
    `LearningRateScheduler`, `TerminateOnNaN`, `TensorBoard`, `History`,
    `LambdaCallback` and your own callbacks work with a Trainer. The
    callback gets the updater's `'main'` model (`set_model`), `params`
    (`epochs` from an epoch stop trigger, `steps` per epoch when the
    iterator knows it, `verbose=0`) and its hooks, as in `fit`:

    - `on_train_begin` when training starts, `on_train_end(logs)` when it
      ends (`logs`: the last epoch's);
    - `on_epoch_begin(epoch)` before the first update of each epoch;
    - `on_train_batch_begin(batch)` before and `on_train_batch_end(batch,
      logs)` after each update, only if the callback overrides them
      (`logs`: that iteration's observation, as Python floats);
    - `on_epoch_end(epoch, logs)` at each epoch boundary, with `logs` the
      means of the epoch's observations. Keys get Keras's names:
      `'main/x'` becomes `x`, `'validation/main/x'` becomes `val_x`, keys
      without `/` stay; other keys are left out. The extension runs at
      `PRIORITY_READER`, after the `Evaluator` (a writer) reported the
      epoch's validation values.

    When a callback sets `model.stop_training = True`, training stops
    before the next update (the trainer's stop trigger is wrapped for
    this), and extensions finalize as usual. If it stops mid-epoch,
    `on_epoch_end` still runs for the partial epoch, as in `fit`. Values
    that callbacks set (weights, `model.optimizer.learning_rate`) take
    effect at the next update on every backend: before each hook that
    runs, the extension writes the updater's training state back into the
    Keras variables (a no-op except on JAX), so it declares
    `needs_model_state = False` and an iteration without a hook to run
    costs no sync. Per-iteration values are averaged without waiting for
    the device; only overridden batch hooks read them every iteration.

    `fit`-only machinery is not available: `on_test_*`/`on_predict_*`
    hooks are never called, and `keras.callbacks.BackupAndRestore` is
    refused (use `ktrainer.training.extensions.snapshot(autoload=True)`).

    Default trigger `(1, 'iteration')`, priority `PRIORITY_READER`,
    default name: the callback's class name.

    Args:
        callback: the Keras callback.

    Example:

    ```python
    trainer.extend(keras.callbacks.CSVLogger("log.csv"))
    trainer.extend(keras.callbacks.EarlyStopping(patience=3))
    ```
    """

    trigger = (1, "iteration")
    priority = extension.PRIORITY_READER
    # It syncs the model state itself, only when a callback hook runs.
    needs_model_state = False

    def __init__(self, callback: keras.callbacks.Callback) -> None:
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError(
                "callback must be a keras.callbacks.Callback. "
                f"Received: callback={callback!r}"
            )
        if isinstance(callback, keras.callbacks.BackupAndRestore):
            raise TypeError(
                "callback must work outside model.fit; BackupAndRestore backs "
                "up fit's own loop, so use "
                "ktrainer.training.extensions.snapshot(autoload=True) to back "
                "up and resume a Trainer. Received: callback=BackupAndRestore"
            )
        self.callback = callback
        self._batch_begin = _overrides(
            callback, "on_train_batch_begin", "on_batch_begin"
        )
        self._batch_end = _overrides(callback, "on_train_batch_end", "on_batch_end")
        if (
            isinstance(callback, keras.callbacks.ModelCheckpoint)
            and callback.save_freq == "epoch"
        ):
            # Its batch hook only checks save_freq; skip a per-iteration sync.
            self._batch_end = False
        self._summary = reporter_module.DictSummary()
        self._updater = None
        self._batch = 0
        self._epoch_pending = False
        self._failed = False
        self._last_logs: dict[str, float] = {}

    @property
    def default_name(self) -> str:
        return type(self.callback).__name__

    def initialize(self, trainer) -> None:
        """Gives the callback the model and params, and starts training."""
        updater = self._updater = trainer.updater
        model = updater.get_model("main")
        _sync(updater)
        self.callback.set_model(model)
        steps = _steps_per_epoch(updater)
        self.callback.set_params(
            {"epochs": _epochs(trainer.stop_trigger), "steps": steps, "verbose": 0}
        )
        model.stop_training = False
        trainer.stop_trigger = _StopOnFlag(
            trainer.stop_trigger, model, self._before_update
        )
        self._summary = reporter_module.DictSummary()
        fraction = updater.epoch_detail - updater.epoch
        self._batch = round(fraction * steps) if steps else 0
        self._epoch_pending = self._batch == 0
        self._failed = False
        self.callback.on_train_begin({})

    def _before_update(self, trainer) -> None:
        if self._epoch_pending:
            _sync(self._updater)
            self.callback.on_epoch_begin(self._updater.epoch, {})
            self._epoch_pending = False
        if self._batch_begin:
            _sync(self._updater)
            self.callback.on_train_batch_begin(self._batch, {})

    def __call__(self, trainer) -> None:
        observation = trainer.observation
        self._summary.add(observation)
        updater = trainer.updater
        if self._batch_end:
            _sync(updater)
            self.callback.on_train_batch_end(self._batch, _batch_logs(observation))
        self._batch += 1
        if updater.is_new_epoch:
            self._end_epoch(updater.epoch - 1)

    def _end_epoch(self, epoch: int) -> None:
        logs = {}
        for key, value in self._summary.compute_mean().items():
            name = _keras_name(key)
            if name is not None:
                logs[name] = float(value)
        _sync(self._updater)
        self.callback.on_epoch_end(epoch, logs)
        self._last_logs = logs
        self._summary = reporter_module.DictSummary()
        self._batch = 0
        self._epoch_pending = True

    def on_error(self, trainer, exc: BaseException, tb) -> None:
        self._failed = True

    def finalize(self) -> None:
        """Ends the partial epoch (if any) and calls `on_train_end`."""
        if self._updater is None:
            return
        if not self._failed and self._batch > 0:
            self._end_epoch(self._updater.epoch)
        _sync(self._updater)
        self.callback.on_train_end(self._last_logs)


def _sync(updater) -> None:
    sync = getattr(updater, "sync_model_state", None)
    if sync is not None:
        sync()


def _batch_logs(observation: dict) -> dict[str, float]:
    logs = {}
    for key, value in observation.items():
        name = _keras_name(key)
        if name is None:
            continue
        try:
            logs[name] = float(keras.ops.convert_to_numpy(value))
        except (TypeError, ValueError):
            continue  # not a scalar
    return logs


def _steps_per_epoch(updater) -> int | None:
    try:
        iterator = updater.get_iterator("main")
    except (AttributeError, KeyError):
        return None
    try:
        return len(iterator)
    except TypeError:
        pass
    batch_size = getattr(iterator, "batch_size", None)
    # An epoch is one pass over the iterator's order, which an order sampler
    # may make longer or shorter than the dataset.
    size = getattr(iterator, "epoch_size", None)
    if size is None:
        try:
            size = len(iterator.dataset)
        except (AttributeError, TypeError):
            return None
    if not batch_size:
        return None
    return math.ceil(size / batch_size)


def _epochs(stop_trigger) -> int | None:
    get_length = getattr(stop_trigger, "get_training_length", None)
    if get_length is None:
        return None
    period, unit = get_length()
    return math.ceil(period) if unit == "epoch" else None
