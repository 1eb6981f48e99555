"""PyTorch steps: eager, as `fit` runs them by default."""

from __future__ import annotations

import contextlib

import numpy
import torch

from ktrainer._backend._common import (
    float_weights,
    is_array,
    metric_reset_values,
    minimize_variables,
    require_built,
)


def serialize_rng_state(serializer) -> None:
    """Saves or loads torch's global CPU generator state.

    Keras layers on torch may draw from the global generator (e.g. an
    unseeded Dropout), so an exact resume needs it. A snapshot written
    under another backend has no such entry and leaves the state alone.
    """
    current = torch.get_rng_state().numpy().copy()
    try:
        state = serializer("torch_rng_state", current)
    except KeyError:
        return
    if state is not None:
        torch.set_rng_state(torch.from_numpy(numpy.asarray(state, "uint8")))


def host_view(tensor):
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    try:
        return tensor.numpy()  # shares the CPU tensor's memory
    except TypeError:  # dtypes numpy lacks (bfloat16): Keras converts them
        import keras

        return keras.ops.convert_to_numpy(tensor)


def sync_fit_state(model) -> None:
    """Nothing to do: `fit` on torch updates the variables in place."""


def finite_flags(tensors):
    """One on-device check of which tensors are finite (a bool vector).

    A tensor is finite exactly when its minimum and maximum are (both
    propagate NaN). One `aminmax` pass per tensor costs a sixth of an
    infinity norm on the CPU (`_foreach_norm` falls back to a slow path
    there): ~65 µs against ~420 µs for the small benchmark MLP's weights,
    which the watched step pays every iteration. An empty tensor is
    finite.
    """
    if not tensors:
        return torch.zeros(0, dtype=torch.bool)
    bounds = []
    with torch.no_grad():
        for tensor in tensors:  # no_grad: no graph, no detach needed
            if tensor.numel():
                bounds.extend(torch.aminmax(tensor))
            else:
                bounds.extend(tensor.new_zeros((2,)))
        # `stack` promotes mixed float dtypes (to float64 at most): exact.
        return torch.stack(bounds).isfinite().view(-1, 2).all(dim=1)


def device_scope(name):
    if name is None:
        return contextlib.nullcontext()
    import keras

    return keras.device(name)


# Numpy dtypes Keras hands to `torch.as_tensor` unchanged (it converts
# uint32 and bfloat16 arrays first; those take the general path): bool,
# uint8, int8/16/32/64, float16/32/64, complex64/128, as type codes.
_AS_IS = frozenset(map(numpy.dtype, "?BbhiqefdFD"))

# Keras's current torch device (honours `keras.device` scopes). Keras has
# no public getter; without this one `_to_tensors` takes the general path.
try:
    from keras.src.backend.torch.core import get_device as _current_device
except ImportError:  # pragma: no cover - another Keras layout
    _current_device = None


def _to_tensors(data, only=None):
    """`data` with its arrays as torch tensors on Keras's current device.

    A tuple of numpy arrays (what the default converter gives) takes a
    direct `torch.as_tensor`, with the result `keras.ops.convert_to_tensor`
    gives: ~8 µs for an `(x, y)` batch instead of ~70 µs.
    """
    if (
        only is None
        and type(data) is tuple
        and _current_device is not None
        and all(type(a) is numpy.ndarray and a.dtype in _AS_IS for a in data)
    ):
        device = _current_device()
        return tuple(torch.as_tensor(a, device=device) for a in data)
    import keras

    def convert(a):
        if a is None or (only is not None and not only(a)):
            return a
        return keras.ops.convert_to_tensor(a)

    return keras.tree.map_structure(convert, data)


class TrainStep:
    """The model's `train_step` (or a custom loss with `backward()`).

    Eager, as `fit` runs it by default; `jit_compile=True` compiles it with
    `torch.compile`, as `fit` does.
    """

    def __init__(self, model, optimizer, loss_fn=None) -> None:
        self.model = model
        self.optimizer = optimizer
        self._loss_fn = loss_fn
        self._built = False
        self._metric_pairs = []
        self._train_step = None
        self._watch = False  # each step checks the float weights
        self._watched = None  # those weights, taken once built
        self._flags = None  # the flags after the latest step, if still true

    def watch_finite(self) -> bool:
        """Makes each step also check whether each float weight is finite.

        Eager, the check runs right after the update, as
        `finite_flags` computes it; `finite_flags()` hands out its result.
        """
        if self._loss_fn is not None:
            return False
        self._watch = True
        if self._built:
            self._watched = float_weights(self.model)
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

    def _build(self, data) -> None:
        if self._loss_fn is None:
            require_built(self.model, data)
            # As fit: `jit_compile=True` compiles the step with torch.compile.
            self._train_step = self.model.train_step
            if self.model.jit_compile and not self.model.run_eagerly:
                self._train_step = torch.compile(self.model.train_step)
            inits = metric_reset_values(self.model)
            self._metric_pairs = [
                (v.value, init) for v, init in zip(self.model.metrics_variables, inits)
            ]
        elif not self.optimizer.built:
            self.optimizer.build(self.model.trainable_variables)
        self._built = True
        if self._watch:
            self._watched = float_weights(self.model)

    def __call__(self, data):
        data = _to_tensors(data)
        if not self._built:
            self._build(data)
        if not self.model.training:
            # Like fit: put torch modules in training mode (dropout, BN);
            # an evaluator between steps switches them to eval mode.
            self.model.train()
        if self._loss_fn is not None:
            return self._custom_step(data)
        with torch.no_grad():
            for value, init in self._metric_pairs:
                value.copy_(init)
        logs = self._train_step(data)
        if self._watch:
            self._flags = finite_flags([v.value for v in self._watched])
        return logs

    def _custom_step(self, data):
        model = self.model
        variables = model.trainable_variables
        model.zero_grad()
        loss, observations = self._loss_fn(data)
        self.optimizer.scale_loss(loss).backward()
        grads = [v.value.grad for v in variables]
        with torch.no_grad():
            self.optimizer.apply(grads, variables)
        # Detach so reported values do not keep the autograd graph alive.
        observations = {
            k: v.detach() if isinstance(v, torch.Tensor) else v
            for k, v in observations.items()
        }
        return loss.detach(), observations

    def run_many(self, stacked):
        """Runs one step per entry of `stacked` (batches on a leading axis).

        Torch runs eagerly, so the steps run one after another; what a
        fused run saves here is the trainer's per-iteration work (the
        iterator, converter, reporter and trigger calls), not dispatches.
        Returns the logs with a leading axis of length `k`, and the last
        step's logs.
        """
        import keras

        count = int(keras.tree.flatten(stacked)[0].shape[0])
        logs = [
            self(keras.tree.map_structure(lambda a, i=i: a[i], stacked))
            for i in range(count)
        ]
        self._flags = None
        return {k: torch.stack([log[k] for log in logs]) for k in logs[0]}, logs[-1]

    def sync(self) -> None:
        """Torch steps update the variables in place: nothing to write.

        The latest step's finite flags stay valid: whoever writes the
        variables afterwards calls `model_state_written`.
        """

    def model_state_written(self) -> None:
        """The step reads the variables itself; only the flags go stale."""
        self._flags = None


class Minimizer:
    """One eager step of `optimizer` on `model` against a loss of any models.

    Gradients are taken with `torch.autograd.grad` for `model`'s trainable
    variables only, so the other models the loss calls get no `.grad`.
    """

    def __init__(self, model, optimizer, others, loss_fn) -> None:
        self.optimizer = optimizer
        self._loss_fn = loss_fn
        self._models = (model, *others)
        self._stepped = minimize_variables(model, others)[0]
        if not optimizer.built:
            optimizer.build(self._stepped)

    def __call__(self, args, kwargs):
        args, kwargs = _to_tensors((args, kwargs), only=is_array)
        for model in self._models:
            model.train()  # like fit: torch modules in training mode
        loss, observations = self._loss_fn(args, kwargs)
        grads = torch.autograd.grad(
            self.optimizer.scale_loss(loss), [v.value for v in self._stepped]
        )
        with torch.no_grad():
            self.optimizer.apply(list(grads), self._stepped)
        # Reported values must not keep the autograd graph alive.
        observations = {
            k: v.detach() if isinstance(v, torch.Tensor) else v
            for k, v in observations.items()
        }
        return loss.detach(), observations


class TestStep:
    """The model's `test_step` run eagerly without gradients."""

    def __init__(self, model) -> None:
        self.model = model
        self._built = False
        self._logs = {}

    def reset(self) -> None:
        for metric in self.model.metrics:
            metric.reset_state()
        self._logs = {}

    def __call__(self, data) -> None:
        data = _to_tensors(data)
        if not self._built:
            require_built(self.model, data)
            self.reset()
            self._built = True
        self.model.eval()
        with torch.no_grad():
            self._logs = self.model.test_step(data)

    def result(self) -> dict:
        return dict(self._logs)
