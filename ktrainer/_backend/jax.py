"""JAX steps: functional state kept as arrays between steps, as `fit` does."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy
from keras import StatelessScope

from ktrainer._backend._common import (
    float_weights,
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


@jax.jit
def _finite_flags(tensors):
    return jnp.stack([jnp.all(jnp.isfinite(t)) for t in tensors])


def finite_flags(tensors):
    """One fused on-device check of which tensors are finite (a bool vector).

    Dispatched asynchronously; nothing waits until the result is read.
    """
    tensors = list(tensors)
    if not tensors:
        return jnp.zeros((0,), bool)
    return _finite_flags(tensors)


def device_scope(name):
    if name is None:
        return contextlib.nullcontext()
    import keras

    return keras.device(name)


# A fresh buffer in one compiled call (`jnp.copy` costs ~4x in Python).
_copy = jax.jit(lambda x: x.copy())


def _write(variables, values) -> None:
    # `_direct_assign` skips assign()'s conversion and shape checks: the
    # values come from a step over these same variables. This is what
    # keeps a sync cheap enough to run before every model-reading extension.
    for variable, value in zip(variables, values):
        variable._direct_assign(value)


class TrainStep:
    """A jitted train step whose state lives outside the Keras variables.

    Between syncs the (trainable, non-trainable, optimizer) arrays are
    held here and threaded through the step, donated to it so XLA updates
    them in place, as `fit` does. `sync()` writes them back into the
    variables without a copy; the next step donates them again, so until
    the next sync a variable may hold an array that was consumed — which
    is why everything that reads variables syncs first. Writes into
    variables (an extension setting the learning rate, a snapshot load)
    are found by identity after a sync or `model_state_written()`, and
    only those variables are re-read.
    """

    def __init__(self, model, optimizer, loss_fn=None) -> None:
        self.model = model
        self.optimizer = optimizer
        self._loss_fn = loss_fn
        self._state = None  # the current arrays; None: read the variables
        self._held = None  # what each variable held when last written/read
        self._written = True  # the variables hold `_state`
        self._check_writes = False
        self._metrics_init = None
        self._built = False
        self._groups = None
        fn = self._compiled_step if loss_fn is None else self._custom_step
        # As fit: run_eagerly / jit_compile=False run the step unjitted.
        self._eager = loss_fn is None and (model.run_eagerly or not model.jit_compile)
        self._jitted = fn if self._eager else jax.jit(fn, donate_argnums=0)
        self._many = None  # the jitted scan of `run_many`, built on first use
        self._watch = False  # the step returns the float weights' flags
        self._watched = None  # those weights, and their places in the state
        self._positions = None
        self._flags = None  # the flags after the latest step, if still true

    def _variables(self):
        # Fixed once the model and optimizer are built; Keras recomputes
        # these lists on every access, which costs more than a tiny step.
        groups = self._groups
        if groups is None:
            groups = (
                self.model.trainable_variables,
                self.model.non_trainable_variables,
                self.optimizer.variables,
            )
            if self._built:
                self._groups = groups
        return groups

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

    def _flagged_step(self, state, metrics_init, data):
        logs, state = self._compiled_step(state, metrics_init, data)
        arrays = [*state[0], *state[1]]
        flags = [jnp.all(jnp.isfinite(arrays[i])) for i in self._positions]
        return logs, state, jnp.stack(flags) if flags else jnp.zeros((0,), bool)

    def _resolve_watched(self) -> None:
        # Once built: the weights exist and the variable groups are fixed.
        trainable, non_trainable, _ = self._variables()
        place = {id(v): i for i, v in enumerate([*trainable, *non_trainable])}
        self._watched = float_weights(self.model)
        self._positions = [place[id(v)] for v in self._watched]

    def watch_finite(self) -> bool:
        """Makes each step also return whether each float weight is finite.

        The check is part of the jitted step, so it costs no dispatch and
        no sync of its own; `finite_flags()` hands out its result.
        """
        if self._eager or self._loss_fn is not None:
            return False
        if not self._watch:
            self._watch = True
            self._jitted = jax.jit(self._flagged_step, donate_argnums=0)
            if self._built:
                self._resolve_watched()
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
        if not self._built:
            if self._loss_fn is None:
                require_built(self.model, data)
                self._metrics_init = metric_reset_values(self.model)
            elif not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)
            self._built = True
            if self._watch:
                self._resolve_watched()
        out = self._jitted(self._take_state(), self._metrics_init, data)
        self._keep_state(out[1])
        if self._watch:
            self._flags = out[2]
        return out[0]

    def _take_state(self):
        """The arrays the next step consumes (and donates)."""
        state = self._state
        if state is None:
            held = tuple([v._value for v in group] for group in self._variables())
            self._held = held
            # Copied once: the step donates its state, and one array may
            # back several variables (donating it twice is an error).
            state = jax.tree.map(_copy, held)
        elif self._check_writes:
            self._collect_writes(state)
        return state

    def _keep_state(self, state) -> None:
        """Holds a step's new arrays; the variables are now behind them."""
        self._state = state
        self._written = False
        self._check_writes = False
        self._flags = None

    def _collect_writes(self, state) -> None:
        for variables, values, held in zip(self._variables(), state, self._held):
            for i, variable in enumerate(variables):
                current = variable._value
                if current is not held[i]:
                    held[i] = current
                    values[i] = _copy(current)  # see __call__

    def sync(self) -> None:
        # The flags stay valid: a writer calls `model_state_written` after.
        if self._state is not None and self._check_writes:
            # Writes since the last sync win over the arrays held here.
            self._collect_writes(self._state)
        if self._state is not None and not self._written:
            for variables, values in zip(self._variables(), self._state):
                _write(variables, values)
            self._held = tuple(list(group) for group in self._state)
            self._written = True
        self._check_writes = True

    def model_state_written(self) -> None:
        """Variables were assigned: the next step takes their new values."""
        self._check_writes = True
        self._flags = None

    def run_many(self, stacked):
        """Runs one step per entry of `stacked` (batches on a leading axis).

        One jitted `lax.scan` over the batches, with the state donated as
        in a single step, so `k` iterations cost one dispatch; the seed
        generators' state is threaded through, so dropout draws the same
        numbers as `k` single steps. Returns the logs with a leading axis
        of length `k`, and the last step's logs. Compiled once per
        distinct `k`.
        """
        if self._loss_fn is not None or self._eager:
            count = len(jax.tree.leaves(stacked)[0])
            logs = [
                self(jax.tree.map(lambda a, i=i: a[i], stacked)) for i in range(count)
            ]
            return {k: jnp.stack([log[k] for log in logs]) for k in logs[0]}, logs[-1]
        if not self._built:  # the first step builds the model and metrics
            first = self(jax.tree.map(lambda a: a[0], stacked))
            rest, last = self.run_many(jax.tree.map(lambda a: a[1:], stacked))
            both = {k: jnp.concatenate([first[k][None], rest[k]]) for k in rest}
            return both, last
        if self._many is None:
            self._many = jax.jit(self._scan_steps, donate_argnums=0)
        logs, last, state = self._many(self._take_state(), self._metrics_init, stacked)
        self._keep_state(state)
        return logs, last

    def _scan_steps(self, state, metrics_init, stacked):
        def body(state, data):
            logs, state = self._compiled_step(state, metrics_init, data)
            return state, logs

        state, logs = jax.lax.scan(body, state, stacked)
        return logs, jax.tree.map(lambda v: v[-1], logs), state


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
