"""TensorFlow steps: `tf.function`-compiled, state in the Keras variables."""

from __future__ import annotations

import contextlib

import numpy
import tensorflow as tf

from ktrainer._backend._common import (
    float_weights,
    metric_reset_values,
    minimize_variables,
    require_built,
)


def serialize_rng_state(serializer) -> None:
    """Nothing global to keep: Keras seed generators hold all RNG state."""


def host_view(tensor):
    # `numpy()` always copies; numpy's view of an eager tensor on the host
    # does not. A variable is read into a tensor first (no copy either).
    tensor = tf.convert_to_tensor(tensor)
    try:
        return numpy.asarray(tensor)
    except ValueError:  # a scalar of an ml_dtypes type (bfloat16): copy it
        return numpy.asarray(tensor.numpy())


def sync_fit_state(model) -> None:
    """Nothing to do: `fit` on tensorflow updates the variables in place."""


def _flags(tensors):
    if not tensors:
        return tf.zeros([0], tf.bool)
    return tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


_finite_flags = tf.function(_flags, reduce_retracing=True, autograph=False)
_flag_functions: dict = {}


def finite_flags(tensors):
    """One fused on-device check of which tensors are finite (a bool vector).

    Dispatched asynchronously; nothing waits until the result is read. For
    variables (the usual case) a function without arguments that reads
    them is compiled once, which skips `tf.function`'s per-call argument
    matching.
    """
    tensors = list(tensors)
    if not all(isinstance(t, tf.Variable) for t in tensors):
        return _finite_flags([tf.convert_to_tensor(t) for t in tensors])
    key = tuple(id(t) for t in tensors)
    function = _flag_functions.get(key)
    if function is None:
        if len(_flag_functions) > 8:  # models come and go (tests)
            _flag_functions.clear()
        function = tf.function(
            lambda: _flags(tensors), autograph=False
        ).get_concrete_function()
        _flag_functions[key] = function
    return function()


def device_scope(name):
    if name is None:
        return contextlib.nullcontext()
    import keras

    return keras.device(name)


class TrainStep:
    """The model's `train_step` (or a custom loss) under one `tf.function`.

    Compiled with the model's `jit_compile` setting, or run eagerly with
    `run_eagerly=True`, as `fit` does.
    Metric variables are reset inside the function before each batch so
    the logs hold that batch's values.
    """

    def __init__(self, model, optimizer, loss_fn=None) -> None:
        self.model = model
        self.optimizer = optimizer
        self._loss_fn = loss_fn
        self._fn = None
        self._many = None  # the tf.function of `run_many`, built on first use
        self._metrics_init = None
        self._watch = False  # each step returns the float weights' flags
        self._watched = None  # those weights, taken when the step is built
        self._flags = None  # the flags after the latest step, if still true

    def _build(self, data):
        model = self.model
        if self._loss_fn is None:
            require_built(model, data)
            self._metrics_init = metric_reset_values(model)
            metric_vars = list(model.metrics_variables)
            inits = self._metrics_init

            watched = self._watched = float_weights(model) if self._watch else None

            def step(data):
                for variable, init in zip(metric_vars, inits):
                    variable.assign(init)
                logs = model.train_step(data)
                if watched is None:
                    return logs
                # Read after the update (program order in a tf.function).
                return logs, _flags([v.value for v in watched])

            if model.run_eagerly:  # as fit: no tf.function at all
                return step
            jit = bool(model.jit_compile)
        else:
            if not self.optimizer.built:
                self.optimizer.build(model.trainable_variables)
            step = self._custom_step
            jit = False
        return tf.function(
            step, reduce_retracing=True, jit_compile=jit, autograph=False
        )

    def _custom_step(self, data):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss, observations = self._loss_fn(data)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, [v.value for v in variables])
        self.optimizer.apply(grads, variables)
        return loss, observations

    def watch_finite(self) -> bool:
        """Makes each step also return whether each float weight is finite.

        The check runs inside the step's `tf.function`, so it costs no
        call of its own; `finite_flags()` hands out its result.
        """
        if self._loss_fn is not None:
            return False
        if not self._watch:
            self._watch = True
            self._fn = None  # traced again, with the flags
        return True

    def finite_flags(self):
        """`(weights, flags)` of the latest step, or `None` if stale.

        `None` before the first step, after a fused run and once the
        variables may have been written (`model_state_written`); a sync
        alone, for a reader, leaves them valid.
        """
        if self._flags is None:
            return None
        return self._watched, self._flags

    def __call__(self, data):
        if self._fn is None:
            self._fn = self._build(data)
            self._concrete = {}
        if not isinstance(self._fn, tf.types.experimental.PolymorphicFunction):
            out = self._fn(data)  # run_eagerly
        else:
            # A concrete function per input signature skips the polymorphic
            # function's per-call signature matching (~40% of a tiny step).
            key = _signature_key(data)
            concrete = self._concrete.get(key)
            if concrete is None:
                concrete = self._fn.get_concrete_function(_specs(data))
                self._concrete[key] = concrete
            out = concrete(data)
        if self._watched is None:
            return out
        self._flags = out[1]
        return out[0]

    def run_many(self, stacked):
        """Runs one step per entry of `stacked` (batches on a leading axis).

        One `tf.function` loops over the batches (a `tf.while_loop`, so
        the graph does not grow with `k`), which saves a dispatch per
        step. Returns the logs with a leading axis of length `k`, and the
        last step's logs.
        """
        if self._fn is None:  # the first step builds the model and metrics
            first = self(tf.nest.map_structure(lambda a: a[0], stacked))
            rest, last = self.run_many(tf.nest.map_structure(lambda a: a[1:], stacked))
            return {k: tf.concat([first[k][None], rest[k]], 0) for k in rest}, last
        if self._loss_fn is not None or self.model.run_eagerly:
            count = int(tf.nest.flatten(stacked)[0].shape[0])
            logs = [
                self(tf.nest.map_structure(lambda a, i=i: a[i], stacked))
                for i in range(count)
            ]
            return {k: tf.stack([log[k] for log in logs]) for k in logs[0]}, logs[-1]
        if self._many is None:
            self._many = tf.function(
                self._loop_steps,
                reduce_retracing=True,
                jit_compile=bool(self.model.jit_compile),
                autograph=False,
            )
        self._flags = None
        return self._many(stacked)

    def _loop_steps(self, stacked):
        model = self.model
        metric_vars = list(model.metrics_variables)
        inits = self._metrics_init

        def one(i):
            for variable, init in zip(metric_vars, inits):
                variable.assign(init)
            return model.train_step(tf.nest.map_structure(lambda a: a[i], stacked))

        first = one(0)  # outside the loop: it tells the logs' keys and dtypes
        keys = sorted(first)
        count = tf.shape(tf.nest.flatten(stacked)[0])[0]
        logs = [
            tf.TensorArray(first[k].dtype, size=count).write(0, first[k]) for k in keys
        ]

        def body(i, *logs):
            step_logs = one(i)
            return (i + 1, *[log.write(i, step_logs[k]) for log, k in zip(logs, keys)])

        out = tf.while_loop(lambda i, *_: i < count, body, (tf.constant(1), *logs))
        stacked_logs = {k: log.stack() for k, log in zip(keys, out[1:])}
        return stacked_logs, {k: v[-1] for k, v in stacked_logs.items()}

    def sync(self) -> None:
        """TensorFlow steps update the variables in place: nothing to write.

        The latest step's finite flags stay valid: whoever writes the
        variables afterwards calls `model_state_written`.
        """

    def model_state_written(self) -> None:
        """The step reads the variables itself; only the flags go stale."""
        self._flags = None


class Minimizer:
    """One `tf.function` step of `optimizer` on `model` against any loss.

    A `GradientTape` records the loss (which may call other models: their
    variables are read, and their non-trainable state assigned, in place)
    and the gradients of `model`'s trainable variables are applied.
    """

    def __init__(self, model, optimizer, others, loss_fn) -> None:
        self.optimizer = optimizer
        self._loss_fn = loss_fn
        self._stepped = minimize_variables(model, others)[0]
        if not optimizer.built:
            optimizer.build(self._stepped)
        self._fn = tf.function(self._step, reduce_retracing=True, autograph=False)

    def _step(self, args, kwargs):
        with tf.GradientTape() as tape:
            loss, observations = self._loss_fn(args, kwargs)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, [v.value for v in self._stepped])
        self.optimizer.apply(grads, self._stepped)
        return loss, observations

    def __call__(self, args, kwargs):
        return self._fn(args, kwargs)


def _leaf_spec(a):
    if a is None:
        return None
    return tf.TensorSpec(a.shape, tf.as_dtype(a.dtype))


def _specs(data):
    return tf.nest.map_structure(_leaf_spec, data)


def _signature_key(data):
    if isinstance(data, tuple) and all(hasattr(a, "shape") for a in data):
        return tuple((a.shape, a.dtype) for a in data)  # the common case
    return repr(
        tf.nest.map_structure(
            lambda a: None if a is None else (tuple(a.shape), str(a.dtype)), data
        )
    )


class TestStep:
    """The model's `test_step` under `tf.function`, accumulating metrics."""

    def __init__(self, model) -> None:
        self.model = model
        self._fn = None
        self._logs = {}

    def reset(self) -> None:
        for metric in self.model.metrics:
            metric.reset_state()
        self._logs = {}

    def __call__(self, data) -> None:
        if self._fn is None:
            require_built(self.model, data)
            self.reset()
            self._fn = tf.function(
                self.model.test_step,
                reduce_retracing=True,
                jit_compile=bool(self.model.jit_compile),
                autograph=False,
            )
        self._logs = self._fn(data)

    def result(self) -> dict:
        return dict(self._logs)
