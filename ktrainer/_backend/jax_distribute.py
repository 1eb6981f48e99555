"""JAX: devices, `jax.distributed` processes and sharded steps."""

from __future__ import annotations

import jax
import keras

from ktrainer._backend._distribute_common import delegate


def device_names(kind: str) -> list[str]:
    try:
        devices = jax.devices(kind)
    except RuntimeError:  # no such platform on this machine
        return []
    return [f"{kind}:{device.id}" for device in devices]


def device_exists(kind: str, index: int) -> bool:
    # Keras's jax `device_scope` looks devices up by platform and id.
    return f"{kind}:{index}" in device_names(kind)


def process_rank() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def is_chief_process() -> bool:
    return jax.process_index() == 0


# -- data-parallel steps -------------------------------------------------------


def train_step_class(model, optimizer):
    """`ShardedTrainStep` under a global `keras.distribution`, else `None`."""
    if keras.distribution.distribution() is None:
        return None
    return ShardedTrainStep


def minimizer_class(model, optimizer):
    """`ShardedMinimizer` under a global `keras.distribution`, else `None`."""
    if keras.distribution.distribution() is None:
        return None
    return ShardedMinimizer


def shard_batch(distribution, data):
    """This process's batch as global arrays laid out by `distribution`.

    As `fit` does: each array is split along its batch axis over the
    distribution's mesh; with several processes, each holds its share of
    the global batch and `jax.make_array_from_process_local_data`
    assembles the global array without moving data between processes.
    """

    def place(x):
        if len(getattr(x, "shape", ())) < 1:
            return x  # None, Python numbers: the same everywhere
        layout = distribution.get_data_layout(x.shape)
        return jax.make_array_from_process_local_data(layout.backend_layout, x)

    return keras.tree.map_structure(place, data)


class ShardedTrainStep:
    """The single-device step run on batches sharded by `keras.distribution`.

    The model's variables were created under the distribution and so are
    already placed by its layouts (replicated under `DataParallel`); the
    jitted step then computes on the sharded batch as one program over
    the mesh (XLA inserts the gradient all-reduce), so the result is the
    global batch's, as on one device.
    """

    def __init__(self, model, optimizer, loss_fn=None) -> None:
        from ktrainer import _backend

        self.distribution = keras.distribution.distribution()
        extra = () if loss_fn is None else (loss_fn,)
        self._inner = _backend.TrainStep(model, optimizer, *extra)

    def __call__(self, data):
        return self._inner(shard_batch(self.distribution, data))

    def __getattr__(self, name):
        # Everything else (sync, state handling) is the single-device step's.
        return delegate(self, name)


class ShardedMinimizer:
    """`minimize` on arguments sharded by `keras.distribution` (see above)."""

    def __init__(self, model, optimizer, others, loss_fn) -> None:
        from ktrainer import _backend

        self.distribution = keras.distribution.distribution()
        self._inner = _backend.Minimizer(model, optimizer, others, loss_fn)

    def __call__(self, args, kwargs):
        args, kwargs = shard_batch(self.distribution, (tuple(args), dict(kwargs)))
        return self._inner(args, kwargs)

    def __getattr__(self, name):
        return delegate(self, name)


def reduces_reports() -> bool:
    """Reported values are already means over replicas: the step reduces them."""
    return False


def mean_over_processes(values: dict) -> dict:
    return dict(values)
