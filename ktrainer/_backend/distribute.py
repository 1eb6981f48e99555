"""The distribution seam: devices, processes and data-parallel steps.

Kept apart from the single-device seam (`ktrainer._backend`) so the two
can change independently; like it, the module matching
`keras.config.backend()` is chosen once and its names are re-exported.

- `device_exists(kind, index)`: whether this process can place
  computation on Keras device `'<kind>:<index>'` (`kind` is `'cpu'`,
  `'gpu'` or `'tpu'`). Answered the same way on every backend, so a
  missing device is an error before training instead of a silent CPU
  run (TensorFlow's soft placement) or a failure at the first batch.
- `device_names(kind)`: the device names of that kind this process sees,
  for error messages.
- `process_rank()`, `process_count()`, `is_chief_process()`: this
  process's place among the processes of the engine's own distributed
  setup (TensorFlow's `TF_CONFIG`, `jax.process_index()`, an initialized
  `torch.distributed` group); `0`, `1`, `True` without one.
- `train_step_class(model, optimizer)`: the data-parallel step class
  (same interface as `TrainStep`) when the model is set up for the
  engine's distribution (built in a `tf.distribute` strategy scope, a
  global `keras.distribution` under jax, an initialized
  `torch.distributed` group), else `None`. It raises for optimizer
  settings that would silently compute something else there.
- `minimizer_class(model, optimizer)`: the same for `Minimizer` (the
  step of `StandardUpdater.minimize`).
- `reduces_reports()`, `mean_over_processes(values)`: whether reported
  values must be averaged over processes by the Reporter (torch, where
  each rank's step reports its own batch), and that average of a dict
  of values in one collective.
- `make_train_step(model, optimizer, loss_fn=None)` and
  `make_minimizer(model, optimizer, others, loss_fn)`: the data-parallel
  step, or the single-device one.
- `prepare_optimizer(model, optimizer)`: refuses, when the updater is
  built, an optimizer the model's distribution cannot step (tensorflow:
  one created or built outside the model's strategy scope, per-replica
  clipping or accumulation), and builds it where its variables belong.
- `test_step_class(model)` / `make_test_step(model)`: the evaluation
  step under the model's distribution (the batch split over this
  process's replicas, metric states accumulated over this process's
  examples only, read back by `metric_values()`), or the single-device
  `TestStep`.
- `sum_over_processes(vector, models)`: the sum of a float64 vector over
  all processes, in one collective (the Evaluator's per-evaluation
  reduction); the vector itself in one process.
- `metrics_result(model, values)`: the model's metric results computed
  from given metric states.
- `local_reports()`: a context in which `reduces_reports()` is `False`,
  so an evaluation's per-batch reports stay local to the process.
"""

from __future__ import annotations

import contextlib
import threading

import keras

from ktrainer._backend._distribute_common import metrics_result

BACKEND = keras.config.backend()

if BACKEND == "jax":
    from ktrainer._backend.jax_distribute import (
        device_exists,
        device_names,
        is_chief_process,
        mean_over_processes,
        minimizer_class,
        prepare_optimizer,
        process_count,
        process_rank,
        sum_over_processes,
        test_step_class,
        train_step_class,
    )
    from ktrainer._backend.jax_distribute import (
        reduces_reports as _engine_reduces_reports,
    )
elif BACKEND == "tensorflow":
    from ktrainer._backend.tensorflow_distribute import (
        device_exists,
        device_names,
        is_chief_process,
        mean_over_processes,
        minimizer_class,
        prepare_optimizer,
        process_count,
        process_rank,
        sum_over_processes,
        test_step_class,
        train_step_class,
    )
    from ktrainer._backend.tensorflow_distribute import (
        reduces_reports as _engine_reduces_reports,
    )
elif BACKEND == "torch":
    from ktrainer._backend.torch_distribute import (
        device_exists,
        device_names,
        is_chief_process,
        mean_over_processes,
        minimizer_class,
        prepare_optimizer,
        process_count,
        process_rank,
        sum_over_processes,
        test_step_class,
        train_step_class,
    )
    from ktrainer._backend.torch_distribute import (
        reduces_reports as _engine_reduces_reports,
    )
else:  # ktrainer._backend already refuses other backends
    raise ImportError(f"unsupported Keras backend {BACKEND!r}")


_LOCAL = threading.local()


def reduces_reports() -> bool:
    """Whether the Reporter averages reported values over processes now."""
    if getattr(_LOCAL, "depth", 0):
        return False
    return _engine_reduces_reports()


@contextlib.contextmanager
def local_reports():
    """Reports made inside stay this process's own (no collective per report)."""
    _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1
    try:
        yield
    finally:
        _LOCAL.depth -= 1


def make_test_step(model):
    """The evaluation step for `model`: distributed when it is set up so.

    Distributed steps have `metric_values()`; the single-device one does
    not (its `result()` is the whole answer).
    """
    from ktrainer import _backend

    step_class = test_step_class(model)
    if step_class is None:
        step_class = _backend.TestStep
    return step_class(model)


def make_train_step(model, optimizer, loss_fn=None):
    """The train step for `model`: data-parallel when it is set up so."""
    from ktrainer import _backend

    step_class = train_step_class(model, optimizer)
    if step_class is None:
        step_class = _backend.TrainStep
    extra = () if loss_fn is None else (loss_fn,)
    return step_class(model, optimizer, *extra)


def make_minimizer(model, optimizer, others, loss_fn):
    """The `minimize` step for `model`: data-parallel when it is set up so."""
    from ktrainer import _backend

    step_class = minimizer_class(model, optimizer)
    if step_class is None:
        step_class = _backend.Minimizer
    return step_class(model, optimizer, others, loss_fn)


__all__ = [
    "BACKEND",
    "device_exists",
    "device_names",
    "is_chief_process",
    "local_reports",
    "make_minimizer",
    "make_test_step",
    "make_train_step",
    "mean_over_processes",
    "metrics_result",
    "minimizer_class",
    "prepare_optimizer",
    "process_count",
    "process_rank",
    "reduces_reports",
    "sum_over_processes",
    "test_step_class",
    "train_step_class",
]
