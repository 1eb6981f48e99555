"""The standard updater: one optimization step of the main model per batch."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy

from ktrainer import _backend
from ktrainer import reporter as reporter_module
from ktrainer._backend import distribute
from ktrainer.dataset.convert import concat_examples, parse_device, to_device
from ktrainer.dataset.data_source_iterator import as_iterator
from ktrainer.iterators.serial_iterator import SerialIterator
from ktrainer.training._fusion import FusedValues
from ktrainer.training.updater import Updater


def _as_dict(value, what: str) -> dict:
    return dict(value) if isinstance(value, dict) else {"main": value}


def _check_iterator(name: str, iterator) -> None:
    missing = [
        attr
        for attr in ("epoch", "epoch_detail", "is_new_epoch")
        if not hasattr(iterator, attr)
    ]
    if not callable(getattr(iterator, "__next__", None)) or missing:
        raise TypeError(
            "iterator must be a ktrainer iterator (e.g. SerialIterator) or a "
            "dict of them; it needs __next__, epoch, epoch_detail and "
            f"is_new_epoch. Received: iterator[{name!r}]={iterator!r}"
        )


class StandardUpdater(Updater):
    """Trains a Keras model on the batches of an iterator, one per update.

    Each `update()` takes a batch from the `'main'` iterator, converts it
    with `converter`, runs one optimization step of the `'main'` model and
    reports the batch's loss and metrics as `'main/loss'`,
    `'main/<metric>'` (as Chainer's `Classifier` does). The step is
    compiled the way `model.fit` compiles it on each backend; reported
    values stay on the device, so nothing waits for the step to finish
    unless an extension reads a value.

    `optimizer` is one of:

    - a compiled `keras.Model`: its compiled optimizer, loss and metrics
      are used; the batch is `(x, y)` or `(x, y, sample_weight)`;
    - a `keras.optimizers.Optimizer`, with `model=` and `loss_func=`;
    - a dict of names to either (with `model` then a dict too). Only
      `'main'` is stepped by `update_core`; subclasses step others.

    `loss_func`, when given, is called as in Chainer with the converted
    batch (a tuple unpacked as positional arguments, a dict as keyword
    arguments, an array as one argument) and returns a scalar loss; it may
    call `ktrainer.report`. Gradients are taken with respect to the
    model's trainable variables. Unless it reports `'main/loss'` itself,
    the loss is reported under that key. `update_core` runs it through
    `minimize('main', loss_func, ...)`.

    Custom updaters (a GAN, several losses) override `update_core` and
    call `minimize(name, loss_func, *args, **kwargs)` once per optimizer,
    as Chainer's `optimizer.update(lossfun, *args)`: one compiled step in
    which optimizer `name` updates model `name` only. The same code runs
    on every backend. Such a subclass needs no `loss_func`:

    ```python
    class GANUpdater(StandardUpdater):
        def update_core(self):
            x = self.converter(next(self.get_iterator()), self.device)
            z = np.random.normal(size=(len(x), 100)).astype("float32")
            gen, dis = self.get_model("gen"), self.get_model("dis")
            self.minimize("dis", loss_dis, gen, dis, x, z)
            self.minimize("gen", loss_gen, gen, dis, z)

    updater = GANUpdater(
        iterator, {"gen": opt_g, "dis": opt_d}, model={"gen": g, "dis": d}
    )
    ```

    Arguments of `minimize` that are arrays are inputs of the compiled
    step; anything else (a model, a Python number) is fixed when it is
    compiled, as `tf.function` treats Python values, so pass numbers that
    change as numpy scalars.

    Args:
        iterator: a ktrainer iterator, or a dict of them with a `'main'`.
        optimizer: see above.
        converter: turns a list of examples into arrays.
            Defaults to `concat_examples`.
        device: where to run: `None`, `-1` or `'cpu'` for the host;
            `0`, `'gpu'` or `'gpu:N'` for an accelerator. Defaults to
            `None` (Keras's default placement).
        loss_func: a custom loss, see above. Defaults to `None`.
        loss_scale: multiplies the loss before differentiation and divides
            the gradients after (Keras's `loss_scale_factor`). Defaults to
            `None`.
        auto_new_epoch: kept for Chainer compatibility; Keras optimizers
            have no per-epoch hook. Defaults to `True`.
        model: the model(s) when `optimizer` is a Keras optimizer.
            Defaults to `None`.
    """

    def __init__(
        self,
        iterator,
        optimizer,
        converter: Callable = concat_examples,
        device: Any = None,
        loss_func: Callable | None = None,
        loss_scale: float | None = None,
        auto_new_epoch: bool = True,
        *,
        model=None,
    ) -> None:
        iterators = {
            name: as_iterator(it) for name, it in _as_dict(iterator, "iterator").items()
        }
        if "main" not in iterators:
            raise ValueError(
                "iterator must contain a 'main' iterator. "
                f"Received: iterator keys={sorted(iterators)}"
            )
        for name, it in iterators.items():
            _check_iterator(name, it)
        if not callable(converter):
            raise TypeError(
                f"converter must be callable. Received: converter={converter!r}"
            )
        if loss_func is not None and not callable(loss_func):
            raise TypeError(
                f"loss_func must be callable. Received: loss_func={loss_func!r}"
            )
        if loss_scale is not None and not loss_scale > 0:
            raise ValueError(
                f"loss_scale must be positive. Received: loss_scale={loss_scale!r}"
            )
        self._iterators = iterators
        custom = type(self).update_core is not StandardUpdater.update_core
        self._models, self._optimizers = _resolve_models(
            optimizer, model, loss_func or custom
        )
        if loss_scale is not None:
            for opt in self._optimizers.values():
                opt.loss_scale_factor = float(loss_scale)
        for name, mdl in self._models.items():
            opt = self._optimizers[name]
            # Slot variables must exist before a snapshot can load them; an
            # optimizer the model's distribution cannot step is refused here.
            distribute.prepare_optimizer(mdl, opt)
        self.converter = converter
        self.device = device
        self._device_name = parse_device(device)
        self.loss_func = loss_func
        self.loss_scale = loss_scale
        self.auto_new_epoch = auto_new_epoch
        self.iteration = 0
        self._steps: dict[str, Any] = {}
        self._minimizers: dict[tuple, Any] = {}
        self._report_keys: dict[str, list] = {}
        # Fused runs: how chunks run, chosen once by timing (update_many).
        self._fusion_mode = "compile"
        self._fusion_length: int | None = None
        self._fused_seconds = 0.0
        self._last_loss = None
        self._trainer = None
        self._defer_sync = False
        self._watch_finite = False  # steps check their weights (watch_finite)

    # -- Chainer's accessors -------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._iterators["main"].epoch

    @property
    def epoch_detail(self) -> float:
        return self._iterators["main"].epoch_detail

    @property
    def previous_epoch_detail(self) -> float | None:
        return self._iterators["main"].previous_epoch_detail

    @property
    def is_new_epoch(self) -> bool:
        return self._iterators["main"].is_new_epoch

    def get_optimizer(self, name: str = "main"):
        return _lookup(self._optimizers, name, "optimizer")

    def get_all_optimizers(self) -> dict:
        return dict(self._optimizers)

    def get_model(self, name: str = "main"):
        return _lookup(self._models, name, "model")

    def get_all_models(self) -> dict:
        return dict(self._models)

    def get_iterator(self, name: str = "main"):
        return _lookup(self._iterators, name, "iterator")

    def connect_trainer(self, trainer) -> None:
        self._trainer = trainer

    def finalize(self) -> None:
        for iterator in self._iterators.values():
            finalize = getattr(iterator, "finalize", None)
            if finalize is not None:
                finalize()

    # -- training ------------------------------------------------------------

    def update(self) -> None:
        """Runs `update_core()` and counts the iteration.

        Afterwards the models' Keras variables hold the updated weights,
        unless a `Trainer` runs the updater inside `deferred_sync()`.
        """
        self.update_core()
        self.iteration += 1
        if not self._defer_sync:
            self.sync_model_state()

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """See `Updater.deferred_sync`."""
        previous, self._defer_sync = self._defer_sync, True
        try:
            yield
        finally:
            self._defer_sync = previous
            if not previous:
                self.sync_model_state()

    def update_core(self) -> None:
        """Steps the `'main'` model on the next batch of the `'main'` iterator."""
        in_arrays = self._next_arrays(self._iterators["main"])
        if self.loss_func is None:
            self.step("main", in_arrays)
            return
        args, kwargs = _as_arguments(in_arrays)
        loss, observations = self._minimize("main", self.loss_func, args, kwargs)
        if "main/loss" not in observations:
            observations = {**observations, "main/loss": loss}
        reporter_module.report(observations)

    def _next_arrays(self, iterator):
        """`converter(next(iterator), device)`, without the list when unseen.

        With the default converter and a `SerialIterator` over numpy
        arrays, the list of examples would be built only to be stacked
        back: take the stacked arrays directly (the same arrays, and the
        iterator advances the same way).
        """
        if (
            self.converter is concat_examples
            and type(iterator).__next__ is SerialIterator.__next__
            and iterator.stackable
        ):
            return to_device(self.device, iterator.next_stacked())
        return self.converter(next(iterator), self.device)

    def update_many(self, steps: int) -> None:
        """Runs `steps` iterations at once: a fused run (`max_fused_steps`).

        Takes `steps` batches from the `'main'` iterator (so epochs,
        shuffling and resume stay exact) and runs them as one compiled
        call where the backend can (a `lax.scan` on jax, a loop inside one
        `tf.function` on tensorflow; one step after another on torch).
        Each reported value gets a leading axis of length `steps`: one
        value per iteration. The second and third calls of the first chunk
        length are timed, one fused and one step by step, and the faster
        way is kept for the rest of the run: on a large model a compiled
        loop can be slower than single steps (XLA's loops on CPU). The
        results are the same either way. An updater with its own
        `update_core` (or a `loss_func`) runs its iterations one by one,
        and its reports are stacked the same way.
        """
        if steps == 1:
            self.update()
            return
        if type(self).update_core is StandardUpdater.update_core and (
            self.loss_func is None
        ):
            done = self._update_many_compiled(steps)
            self.iteration += done
        else:
            done = self._update_many_each(steps)
        if not self._defer_sync:
            self.sync_model_state()
        if done < steps:
            raise StopIteration

    def _update_many_compiled(self, steps: int) -> int:
        iterator = self._iterators["main"]
        batches = []
        try:
            for _ in range(steps):
                batches.append(self._next_arrays(iterator))
        except StopIteration:
            if not batches:
                raise
        stacked = _stack_batches(batches)
        step = self._steps.get("main")
        if stacked is None or step is None or not hasattr(step, "run_many"):
            # Ragged batches, or no compiled step yet: one by one.
            self._run_each(batches)
            return len(batches)

        def fused() -> None:
            self._run_fused(step, stacked)

        def each() -> None:
            self._run_each(batches)

        # One choice for the whole run, made on the first fused length: its
        # first call compiles, the next runs fused and the one after step
        # by step, both timed. Until then other lengths run step by step
        # (compiling nothing more).
        mode = self._fusion_mode
        if mode not in ("fused", "each"):
            if self._fusion_length is None:
                self._fusion_length = len(batches)
            if len(batches) != self._fusion_length:
                mode = "each"
        if mode == "compile":
            fused()
            self._fusion_mode = "time fused"
        elif mode == "time fused":
            self._fused_seconds = self._timed(fused)
            self._fusion_mode = "time each"
        elif mode == "time each":
            # Keep fusing only where it is faster (small models); a large
            # model's loop can run slower fused (XLA's CPU loops).
            faster = self._fused_seconds < self._timed(each)
            self._fusion_mode = "fused" if faster else "each"
        elif mode == "fused":
            fused()
        else:
            each()
        return len(batches)

    def _run_each(self, batches: list) -> None:
        self._report_stacked([self._step_and_observe(b) for b in batches])

    def _run_fused(self, step, stacked) -> None:
        with _backend.device_scope(self._device_name):
            result, last = step.run_many(_as_keras_data(stacked))
        self._last_loss = last["loss"]
        keys = self._report_keys["main"]
        reporter_module.report(
            {full: FusedValues(result[k], last[k]) for k, full in keys}
        )

    def _timed(self, run: Callable[[], None]) -> float:
        """Seconds `run` takes on the device: waits before and after it.

        Used only while choosing between fused and one-by-one runs (two
        calls in a whole run), so the waits stay out of the hot path.
        """
        self._wait_for_device()
        start = time.perf_counter()
        run()
        self._wait_for_device()
        return time.perf_counter() - start

    def _wait_for_device(self) -> None:
        loss = self._last_loss
        if loss is not None:
            # Reading the latest loss waits for every step queued before it.
            _backend.host_view(loss)

    def _step_and_observe(self, in_arrays) -> dict:
        observation: dict = {}
        with reporter_module.get_current_reporter().scope(observation):
            self.step("main", in_arrays)
        self._last_loss = observation.get("main/loss")
        return observation

    def _update_many_each(self, steps: int) -> int:
        reporter = reporter_module.get_current_reporter()
        observations = []
        try:
            for _ in range(steps):
                observation: dict = {}
                with reporter.scope(observation):
                    self.update_core()
                # Counted per step: update_core may read the iteration.
                self.iteration += 1
                observations.append(observation)
        except StopIteration:
            if not observations:
                raise
        self._report_stacked(observations)
        return len(observations)

    @staticmethod
    def _report_stacked(observations: list) -> None:
        """Reports, per key reported at every iteration, the stacked values."""
        keys = [k for k in observations[0] if all(k in o for o in observations)]
        reporter_module.get_current_reporter().report(
            {k: keras.ops.stack([o[k] for o in observations]) for k in keys}
        )

    def minimize(self, name: str, loss_func: Callable, *args, **kwargs) -> Any:
        """Runs one optimization step of model `name` against `loss_func`.

        Optimizer `name` updates the trainable variables of model `name`
        to reduce `loss_func(*args, **kwargs)`, in one step compiled as
        the backend compiles a training step (jit on jax, a `tf.function`
        on tensorflow, eager on torch), once per `(name, loss_func)`.
        The loss may call any of the updater's models (call them with
        `training=True`): the others are read with their current weights
        and their non-trainable state (BatchNorm statistics) is updated,
        but they are not differentiated or stepped. `ktrainer.report`
        works inside the loss. Every model must be built (have its
        variables) before the first call.

        Args:
            name: the name of the model and optimizer to step.
            loss_func: returns a scalar loss; may call `report`.
            *args: positional arguments of `loss_func`.
            **kwargs: keyword arguments of `loss_func`.

        Returns:
            The loss, a backend scalar tensor (not copied to the host).
        """
        loss, observations = self._minimize(name, loss_func, args, kwargs)
        reporter_module.report(observations)
        return loss

    def _minimize(self, name: str, loss_func: Callable, args, kwargs):
        if not callable(loss_func):
            raise TypeError(
                f"loss_func must be callable. Received: loss_func={loss_func!r}"
            )
        key = (name, loss_func)
        minimizer = self._minimizers.get(key)
        if minimizer is None:
            model = self.get_model(name)
            _backend.check_built(self._models)
            others = [m for n, m in self._models.items() if n != name]
            minimizer = self._minimizers[key] = distribute.make_minimizer(
                model,
                self._optimizers[name],
                others,
                _capturing_loss(loss_func, self._observer_names()),
            )
        # Compiled steps may hold state outside the variables (jax).
        self.sync_model_state()
        with _backend.device_scope(self._device_name):
            return minimizer(args, kwargs)

    def step(self, name: str, in_arrays) -> None:
        """Runs one step of the compiled model `name` and reports its logs.

        The model's compiled loss, optimizer and metrics are used, as
        `fit` uses them; subclasses with several models call this from
        `update_core` (or `minimize` for a custom loss).
        """
        step = self._steps.get(name)
        if step is None:
            _check_batch(in_arrays)
            model, optimizer = self.get_model(name), self._optimizers[name]
            step = self._steps[name] = distribute.make_train_step(model, optimizer)
            if self._watch_finite:
                _watch_finite(step)
        with _backend.device_scope(self._device_name):
            result = step(_as_keras_data(in_arrays))
        keys = self._report_keys.get(name)
        if keys is None or len(keys) != len(result):
            # 'loss' first, then the metrics by name, on every backend
            # (a jitted JAX step returns its dict sorted).
            order = sorted(result, key=lambda k: (k != "loss", k))
            keys = self._report_keys[name] = [(k, f"{name}/{k}") for k in order]
        reporter_module.report({full: result[k] for k, full in keys})

    def _observer_names(self) -> dict:
        reporter = getattr(self._trainer, "reporter", None)
        if reporter is None:
            reporter = reporter_module.Reporter()
            for name, mdl in self._models.items():
                reporter.add_observer(name, mdl)
        return reporter

    def sync_model_state(self) -> None:
        """Writes step state back into the Keras variables (see `Updater`)."""
        for step in self._steps.values():
            step.sync()

    def model_state_written(self) -> None:
        """Makes the next step take assigned variables (see `Updater`)."""
        for step in self._steps.values():
            # Steps that read the variables themselves need no hook.
            written = getattr(step, "model_state_written", None)
            if written is not None:
                written()

    def watch_finite_weights(self) -> bool:
        """Asks each model's step to check its own weights for NaN and Inf.

        The check becomes part of the compiled step (one flag per
        floating-point weight, computed from the updated weights), so
        `FailOnNonNumber` needs neither a sync nor a call of its own.
        Returns whether this updater's iterations run such steps: not
        with a custom `update_core` or a `loss_func`.
        """
        if type(self).update_core is not StandardUpdater.update_core:
            return False
        if self.loss_func is not None:
            return False
        self._watch_finite = True
        for step in self._steps.values():
            _watch_finite(step)
        return True

    def finite_weight_flags(self) -> list | None:
        """`[(model name, weights, flags)]` from the latest step, or `None`.

        `flags` is a device bool vector, one flag per weight, true where
        that weight was all finite after the step. `None` when any model's
        flags are unknown: before its first step, after a fused call, or
        once the variables may have been written since the step
        (`model_state_written()`, which the trainer calls after every
        extension that may assign them); then read the weights instead.
        """
        found = []
        for name in self._models:
            flags = getattr(self._steps.get(name), "finite_flags", None)
            result = flags() if flags is not None else None
            if result is None:
                return None
            found.append((name, *result))
        return found

    def serialize(self, serializer) -> None:
        """Saves or loads iterators, models, optimizers and the iteration."""
        from ktrainer.serializers import serialize_object

        self.sync_model_state()
        for name, iterator in self._iterators.items():
            iterator.serialize(serializer["iterator:" + name])
        for name, optimizer in self._optimizers.items():
            model = self._models[name]
            serialize_object(optimizer, serializer["optimizer:" + name], model=model)
            serialize_object(model, serializer["model:" + name])
        self.iteration = serializer("iteration", self.iteration)
        _backend.serialize_rng_state(serializer)


def _watch_finite(step) -> None:
    # Data-parallel steps have no in-step check: their flags stay unknown.
    watch = getattr(step, "watch_finite", None)
    if watch is not None:
        watch()


def _lookup(table: dict, name: str, what: str):
    try:
        return table[name]
    except KeyError:
        raise KeyError(
            f"no {what} named {name!r}; registered: {sorted(table)}"
        ) from None


def _resolve_models(optimizer, model, has_loss) -> tuple[dict, dict]:
    optimizers = _as_dict(optimizer, "optimizer")
    models_arg = (
        model if isinstance(model, dict) else ({} if model is None else {"main": model})
    )
    models, opts = {}, {}
    for name, opt in optimizers.items():
        if isinstance(opt, keras.Model):
            if getattr(opt, "optimizer", None) is None:
                raise ValueError(
                    f"optimizer[{name!r}] is a keras.Model that is not compiled; "
                    "call model.compile(optimizer=..., loss=...) first. "
                    f"Received: optimizer[{name!r}]={opt.name!r}"
                )
            models[name], opts[name] = opt, opt.optimizer
        elif isinstance(opt, keras.optimizers.Optimizer):
            mdl = models_arg.get(name)
            if not isinstance(mdl, keras.Model):
                raise TypeError(
                    "model must be given as a keras.Model (or a dict of them) "
                    "when optimizer is a keras optimizer. "
                    f"Received: model={mdl!r} for optimizer {name!r}"
                )
            if not has_loss:
                raise ValueError(
                    "loss_func is required when optimizer is a keras optimizer "
                    "rather than a compiled model (unless a subclass's "
                    "update_core calls minimize). Received: loss_func=None"
                )
            models[name], opts[name] = mdl, opt
        else:
            raise TypeError(
                "optimizer must be a compiled keras.Model, a "
                "keras.optimizers.Optimizer or a dict of them. "
                f"Received: optimizer={opt!r}"
            )
    return models, opts


def _check_batch(in_arrays) -> None:
    """Rejects batches a compiled model's train_step cannot take."""
    if isinstance(in_arrays, (tuple, list)):
        if not 1 <= len(in_arrays) <= 3:
            raise ValueError(
                "a batch for a compiled model must convert to (x,), (x, y) or "
                "(x, y, sample_weight). Received: a tuple of "
                f"{len(in_arrays)} arrays"
            )
        return
    if isinstance(in_arrays, dict) or hasattr(in_arrays, "shape"):
        return
    raise TypeError(
        "the converter must return arrays, a tuple or a dict of arrays. "
        f"Received: {type(in_arrays).__name__}"
    )


def _as_keras_data(in_arrays):
    if isinstance(in_arrays, list):
        return tuple(in_arrays)
    return in_arrays


def _as_arguments(in_arrays) -> tuple[tuple, dict]:
    """A converted batch as `loss_func`'s arguments, as Chainer passes them."""
    if isinstance(in_arrays, (tuple, list)):
        return tuple(in_arrays), {}
    if isinstance(in_arrays, dict):
        return (), dict(in_arrays)
    return (in_arrays,), {}


def _capturing_loss(loss_func: Callable, reporter) -> Callable:
    """Wraps `loss_func` so its reports come back as outputs of the step.

    A compiled step (jit, tf.function) cannot report from inside: values
    there are symbolic. The wrapper collects reports into a dict the step
    returns, and the updater reports the concrete values afterwards.
    """

    def loss_fn(args, kwargs):
        observation: dict = {}
        with reporter.scope(observation):
            loss = loss_func(*args, **kwargs)
        return loss, observation

    return loss_fn


def _stack_batches(batches: list):
    """Stacks converted batches along a new first axis; `None` if ragged."""

    def stack(*arrays):
        if any(a is None for a in arrays):
            raise ValueError("a batch part is None")
        if all(isinstance(a, numpy.ndarray) for a in arrays):
            return numpy.stack(arrays)
        return keras.ops.stack(arrays)

    try:
        return keras.tree.map_structure(stack, *batches)
    except (ValueError, TypeError):
        return None
