"""JAX: devices, `jax.distributed` processes and sharded steps."""

from __future__ import annotations

import jax
import keras
import numpy as np

from ktrainer._backend._common import metric_reset_values, require_built
from ktrainer._backend._distribute_common import (
    batch_size,
    delegate,
    metrics_result,
)


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


def prepare_optimizer(model, optimizer) -> None:
    """Builds `optimizer` for a built `model` (its slots exist before a load)."""
    if model.built and not optimizer.built:
        optimizer.build(model.trainable_variables)


# -- evaluation ----------------------------------------------------------------


def test_step_class(model):
    """`ShardedTestStep` under a global `keras.distribution`, else `None`."""
    if keras.distribution.distribution() is None:
        return None
    return ShardedTestStep


def _batch_shards(distribution, mesh) -> int:
    """How many parts the batch axis is split into over `mesh`."""
    name = distribution.batch_dim_name
    return dict(zip(mesh.axis_names, mesh.devices.shape)).get(name, 1)


class ShardedTestStep:
    """`test_step` on this process's batches, split over its devices.

    The metrics accumulate over this process's batches only, so processes
    may evaluate different numbers of examples; the Evaluator then sums
    the metric states over processes (`sum_over_processes`) in one
    collective. In one process the batch is laid out by the distribution
    (split along the batch axis over the mesh, the model's variables as
    the distribution placed them). With several processes each runs its
    own program over its local devices: the batch is split over them and
    the variables (replicated, as `DataParallel` places them) are read
    from this process's copy. A batch whose size is not a multiple of the
    number of parts runs its remainder replicated (each metric state is a
    sum over examples, so the split does not change it).
    """

    def __init__(self, model) -> None:
        self.model = model
        self.distribution = keras.distribution.distribution()
        self._jitted = jax.jit(self._step)
        self._state = None
        self._variables = None

    def _step(self, trainable, non_trainable, metrics, data):
        _, state = self.model.test_step((trainable, non_trainable, metrics), data)
        return state[2]

    def reset(self) -> None:
        self._state = None
        self._variables = None

    def _setup(self, data) -> None:
        model = self.model
        require_built(model, data)
        mesh = self.distribution.device_mesh.backend_mesh
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        if jax.process_count() > 1:
            # A program of this process only: its devices, its copy of the
            # variables, so processes may run different numbers of batches.
            index = jax.process_index()
            local = [d for d in mesh.devices.flat if d.process_index == index]
            mesh = jax.sharding.Mesh(np.array(local), ("batch",))
            self._shards = len(local)
            replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            trainable = [_local_copy(x, replicated) for x in trainable]
            non_trainable = [_local_copy(x, replicated) for x in non_trainable]
            self._split = jax.sharding.NamedSharding(
                mesh, jax.sharding.PartitionSpec("batch")
            )
        else:
            self._shards = _batch_shards(self.distribution, mesh)
            self._split = None
        self._mesh = mesh
        self._variables = (trainable, non_trainable)
        self._state = metric_reset_values(model)

    def _place(self, data, lo: int, hi: int, split: bool):
        mesh = self._mesh

        def place(x):
            if len(getattr(x, "shape", ())) < 1:
                return x
            part = x[lo:hi]
            if not split:
                sharding = jax.sharding.NamedSharding(
                    mesh, jax.sharding.PartitionSpec()
                )
            elif self._split is not None:
                sharding = self._split
            else:
                sharding = self.distribution.get_data_layout(part.shape).backend_layout
            return jax.device_put(part, sharding)

        return keras.tree.map_structure(place, data)

    def __call__(self, data) -> None:
        if self._state is None:
            self._setup(data)
        size = batch_size(keras.tree.flatten(data))
        head = size - size % self._shards
        parts = [(0, head, True)] if head else []
        if head < size:
            parts.append((head, size, False))
        for lo, hi, split in parts:
            self._state = self._jitted(
                *self._variables, self._state, self._place(data, lo, hi, split)
            )

    def metric_values(self) -> list:
        """This process's metric states, as numpy arrays."""
        return [np.asarray(jax.device_get(_addressable(x))) for x in self._state]

    def result(self) -> dict:
        return metrics_result(self.model, self.metric_values())


def _addressable(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return x.addressable_data(0)
    return x


def _local_copy(x, sharding):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return jax.device_put(x, sharding)
    if not x.is_fully_replicated:
        raise ValueError(
            "model variables must be replicated on every process (as "
            "keras.distribution.DataParallel places them) for an Evaluator "
            "in a run of several processes. Received: a variable of shape "
            f"{tuple(x.shape)} sharded as {x.sharding}"
        )
    return jax.device_put(x.addressable_data(0), sharding)


def sum_over_processes(vector: np.ndarray, models=()) -> np.ndarray:
    """The element-wise sum of a float64 vector over processes, one collective."""
    del models
    vector = np.ascontiguousarray(vector, dtype=np.float64)
    if jax.process_count() == 1:
        return vector
    from jax.experimental import multihost_utils

    # Gathered as 32-bit words: exact, whatever jax's float precision.
    words = multihost_utils.process_allgather(vector.view(np.uint32))
    rows = np.asarray(words, dtype=np.uint32).reshape(jax.process_count(), -1)
    return rows.view(np.float64).sum(axis=0)


def reduces_reports() -> bool:
    """Reported values are already means over replicas: the step reduces them."""
    return False


def mean_over_processes(values: dict) -> dict:
    return dict(values)
