"""TensorFlow steps: `tf.function`-compiled, state in the Keras variables."""

from __future__ import annotations

import contextlib

import numpy
import tensorflow as tf

from ktrainer._backend._common import (
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


def device_scope(name):
    if name is None:
        return contextlib.nullcontext()
    import keras

    return keras.device(name)


class TrainStep:
    """The model's `train_step` (or a custom loss) under one `tf.function`.

    Compiled with the model's `jit_compile` setting, as `fit` compiles it.
    Metric variables are reset inside the function before each batch so
    the logs hold that batch's values.
    """

    def __init__(self, model, optimizer, loss_fn=None) -> None:
        self.model = model
        self.optimizer = optimizer
        self._loss_fn = loss_fn
        self._fn = None
        self._metrics_init = None

    def _build(self, data):
        model = self.model
        if self._loss_fn is None:
            require_built(model, data)
            self._metrics_init = metric_reset_values(model)
            metric_vars = list(model.metrics_variables)
            inits = self._metrics_init

            def step(data):
                for variable, init in zip(metric_vars, inits):
                    variable.assign(init)
                return model.train_step(data)

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

    def __call__(self, data):
        if self._fn is None:
            self._fn = self._build(data)
        return self._fn(data)

    def sync(self) -> None:
        """Nothing to do: TensorFlow steps update the variables in place."""


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
