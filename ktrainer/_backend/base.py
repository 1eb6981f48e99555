"""The backend seam's contract: what each backend module provides.

ktrainer is written once against `keras`, `keras.ops` and numpy. The few
things that need a framework's own API — a compiled training step that
keeps state the way `model.fit` does, and a compiled evaluation step —
live behind this seam, one module per backend with the same names:

- `TrainStep(model, optimizer, loss_fn=None)`: one optimization step per
  call. With `loss_fn=None` it runs the compiled model's own `train_step`
  (its compiled loss, optimizer and metrics, as `fit` does) and returns
  the logs of that batch alone (metrics are reset before every batch, so
  a value is the batch's, as Chainer reports it). With a `loss_fn`, a
  backend-neutral function `loss_fn(data) -> (loss, observations)`, it
  differentiates the loss with respect to `model.trainable_variables`,
  applies `optimizer`, and returns `(loss, observations)`.
  Returned values stay backend tensors: no host sync. The step is
  compiled as `fit` compiles it (jit / `tf.function` / eager, honouring
  the model's `run_eagerly` and `jit_compile`).
  `sync()` makes the Keras variables hold the current state (JAX keeps
  state as arrays between steps, as `fit` does, and writes them back
  without a copy; elsewhere a no-op); variables assigned after it take
  effect at the next call. `model_state_written()` says variables were
  assigned without a sync before (an extension whose `model_state` is
  `'write'`): the next call takes exactly the assigned ones.
  `watch_finite()` makes each later call also compute, inside the
  step (the compiled one on jax and tensorflow; after the update in
  torch's eager one), one flag per floating-point weight (trainable, then
  non-trainable) telling whether it is all finite after the update, and
  returns whether it will; `finite_flags()` returns `(weights, flags)`
  of the latest call, or `None` once stale (before the first call, after
  `run_many`, `sync()` or `model_state_written()`). `FailOnNonNumber`
  uses it to check the weights without a call or a sync of its own.
- `Minimizer(model, optimizer, others, loss_fn)`: one compiled step per
  call `minimizer(args, kwargs)` of `optimizer` on `model`'s trainable
  variables, against `loss_fn(args, kwargs) -> (loss, observations)`,
  which may call the `others` models: their variables are read, and
  their non-trainable ones (BatchNorm statistics, seed states) updated,
  but not differentiated. The Keras variables hold the new values after
  each call. Array leaves of `args`/`kwargs` are inputs, other leaves
  are static (`_common.is_array`).
- `TestStep(model)`: `reset()`, `__call__(data)` accumulates the compiled
  loss and metrics over batches, `result()` returns their logs, exactly
  as `model.evaluate` computes them.
- `serialize_rng_state(serializer)`: saves or loads framework-global
  random state that Keras seed generators do not cover (torch's global
  generator); a no-op where there is none.
- `sync_fit_state(model)`: the same as `sync()` for the state `model.fit`
  keeps (`ExtensionsCallback`); a no-op where `fit` updates variables in
  place.
- `finite_flags(tensors)`: a device bool vector, one flag per tensor,
  whether it is all finite, computed by one compiled call that nothing
  waits for (`FailOnNonNumber`).
- `device_scope(name)`: a context manager placing computation on a Keras
  device name (`'cpu:0'`, `'gpu:1'`), or a no-op for `None`.
- `host_view(tensor)`: a numpy array of a tensor's value that shares the
  tensor's memory when it already lives on the host (a copy otherwise),
  for writers that consume it at once. `keras.ops.convert_to_numpy`
  always copies, which a snapshot of a large model pays for twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

LossFn = Callable[[Any], tuple[Any, dict[str, Any]]]


class TrainStepProtocol(Protocol):
    def __call__(self, data: Any) -> dict[str, Any]: ...

    def sync(self) -> None: ...

    def model_state_written(self) -> None: ...


class TestStepProtocol(Protocol):
    def reset(self) -> None: ...

    def __call__(self, data: Any) -> None: ...

    def result(self) -> dict[str, Any]: ...
