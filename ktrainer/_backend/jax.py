"""JAX steps: functional state kept as arrays between steps, as `fit` does."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy
from keras import StatelessScope

from ktrainer._backend._common import (
    is_array,
    metric_reset_values,
    minimize_variables,
    require_built,
)


def serialize_rng_state(serializer) -> None:
    """Nothing global to keep: Keras seed generators hold all RNG state."""


def host_view(tensor):
    # Zero-copy for arrays on the CPU: numpy reads jax's host buffer.
    return numpy.asarray(tensor)


def sync_fit_state(model) -> None:
    """Writes `fit`'s functional state back into the model's variables.

    Keras's jax `fit` keeps the state as arrays between steps; after this
    sync it re-reads the variables, so writes made then take effect.
    """
    model.jax_state_sync()


def device_scope(name):
    if name is None:
        return contextlib.nullcontext()
    import keras

    return keras.device(name)


def _write(variables, values) -> None:
    # `_direct_assign` skips assign()'s conversion and shape checks: the
    # values come from a step over these same variables. This is what
    # keeps a sync cheap enough to run before every model-reading extension.
    for variable, value in zip(variables, values):
        variable._direct_assign(value)


class TrainStep:
    """A jitted train step whose state lives outside the Keras variables.

    Between syncs the (trainable, non-trainable, optimizer) arrays are
    held here and threaded through the step; `sync()` writes them back.
    """

    def __init__(self, model, optimizer, loss_fn=None) -> None:
        self.model = model
        self.optimizer = optimizer
        self._loss_fn = loss_fn
        self._state = None
        self._metrics_init = None
        self._built = False
        fn = self._compiled_step if loss_fn is None else self._custom_step
        # Donating the state lets XLA update weights and optimizer slots in
        # place, as `fit` does; without it every step allocates new buffers.
        self._jitted = jax.jit(fn, donate_argnums=0)

    def _variables(self):
        return (
            self.model.trainable_variables,
            self.model.non_trainable_variables,
            self.optimizer.variables,
        )

    def _compiled_step(self, state, metrics_init, data):
        trainable, non_trainable, opt_vars = state
        logs, new_state = self.model.train_step(
            (trainable, non_trainable, opt_vars, metrics_init), data
        )
        return logs, new_state[:3]

    def _custom_step(self, state, metrics_init, data):
        del metrics_init
        trainable, non_trainable, opt_vars = state
        model = self.model

        def compute(trainable, non_trainable):
            mapping = [
                *zip(model.trainable_variables, trainable),
                *zip(model.non_trainable_variables, non_trainable),
            ]
            with StatelessScope(state_mapping=mapping) as scope:
                loss, observations = self._loss_fn(data)
                scaled = self.optimizer.scale_loss(loss)
            new_non_trainable = [
                _current(scope, ref, old)
                for ref, old in zip(model.non_trainable_variables, non_trainable)
            ]
            return scaled, (loss, observations, new_non_trainable)

        grad_fn = jax.value_and_grad(compute, has_aux=True)
        (_, (loss, observations, non_trainable)), grads = grad_fn(
            trainable, non_trainable
        )
        trainable, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, trainable)
        return (loss, observations), (trainable, non_trainable, opt_vars)

    def __call__(self, data):
        if not self._built:
            if self._loss_fn is None:
                require_built(self.model, data)
                self._metrics_init = metric_reset_values(self.model)
            elif not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)
            self._built = True
        if self._state is None:
            # Copies: the step donates its state, and the variables must
            # keep valid arrays for whoever reads them between syncs.
            self._state = jax.tree.map(
                jnp.copy, tuple([v.value for v in group] for group in self._variables())
            )
        logs, self._state = self._jitted(self._state, self._metrics_init, data)
        return logs

    def sync(self) -> None:
        if self._state is None:
            return
        for variables, values in zip(self._variables(), self._state):
            _write(variables, values)
        self._state = None


def _current(scope, ref, old):
    value = scope.get_current_value(ref)
    return old if value is None else value


class Minimizer:
    """One jitted step of `optimizer` on `model` against a loss of any models.

    Functional, like `fit`'s step: the loss runs under a `StatelessScope`
    mapping every variable to an array, is differentiated with respect to
    `model`'s trainable arrays only, and the new arrays are written back
    into the Keras variables after each call (without donation, so arrays
    that someone still holds stay valid).
    """

    def __init__(self, model, optimizer, others, loss_fn) -> None:
        self.model = model
        self.optimizer = optimizer
        self._loss_fn = loss_fn
        self._groups = minimize_variables(model, others)
        if not optimizer.built:
            optimizer.build(self._groups[0])
        # Non-array arguments (models, Python numbers) are static.
        self._jitted = jax.jit(self._step, static_argnums=(5, 6))

    def _step(self, stepped, read, state, opt_vars, arrays, treedef, static):
        stepped_vars, read_vars, state_vars = self._groups
        fixed = dict(static)
        arrays = iter(arrays)
        leaves = [
            fixed[i] if i in fixed else next(arrays) for i in range(treedef.num_leaves)
        ]
        args, kwargs = jax.tree.unflatten(treedef, leaves)

        def compute(stepped):
            mapping = [
                *zip(stepped_vars, stepped),
                *zip(read_vars, read),
                *zip(state_vars, state),
            ]
            with StatelessScope(state_mapping=mapping) as scope:
                loss, observations = self._loss_fn(args, kwargs)
                scaled = self.optimizer.scale_loss(loss)
            new_state = [
                _current(scope, ref, old) for ref, old in zip(state_vars, state)
            ]
            return scaled, (loss, observations, new_state)

        grad_fn = jax.value_and_grad(compute, has_aux=True)
        (_, (loss, observations, state)), grads = grad_fn(stepped)
        stepped, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, stepped)
        return loss, observations, stepped, state, opt_vars

    def __call__(self, args, kwargs):
        stepped_vars, read_vars, state_vars = self._groups
        opt = self.optimizer.variables
        leaves, treedef = jax.tree.flatten((args, kwargs))
        arrays = [leaf for leaf in leaves if is_array(leaf)]
        static = tuple((i, leaf) for i, leaf in enumerate(leaves) if not is_array(leaf))
        loss, observations, stepped, state, opt_values = self._jitted(
            [v.value for v in stepped_vars],
            [v.value for v in read_vars],
            [v.value for v in state_vars],
            [v.value for v in opt],
            arrays,
            treedef,
            static,
        )
        _write(stepped_vars, stepped)
        _write(state_vars, state)
        _write(opt, opt_values)
        return loss, observations


class TestStep:
    """A jitted `test_step` that accumulates metrics functionally."""

    def __init__(self, model) -> None:
        self.model = model
        self._jitted = jax.jit(self._step)
        self._metrics = None
        self._logs = {}

    def _step(self, trainable, non_trainable, metrics, data):
        logs, state = self.model.test_step((trainable, non_trainable, metrics), data)
        return logs, state[2]

    def reset(self) -> None:
        self._metrics = None
        self._logs = {}

    def __call__(self, data) -> None:
        model = self.model
        if self._metrics is None:
            require_built(model, data)
            self._metrics = metric_reset_values(model)
        self._logs, self._metrics = self._jitted(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            self._metrics,
            data,
        )

    def result(self) -> dict:
        return dict(self._logs)
