"""TensorFlow: devices, `TF_CONFIG` processes and `tf.distribute` steps."""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from ktrainer._backend._common import require_built
from ktrainer._backend._distribute_common import (
    metrics_result,
    warn_unsynchronized_batch_norm,
)


def device_names(kind: str) -> list[str]:
    # Logical devices: what `tf.device` places on, including logical CPUs
    # made with `tf.config.set_logical_device_configuration`.
    return [
        device.name.rsplit("device:", 1)[-1].lower()
        for device in tf.config.list_logical_devices(kind.upper())
    ]


def device_exists(kind: str, index: int) -> bool:
    if kind == "cpu" and index == 0:
        return True  # skip initializing the runtime for the common case
    return f"{kind}:{index}" in device_names(kind)


def _cluster() -> tuple[list[tuple[str, int]], tuple[str, int] | None]:
    """The (task type, index) of every worker in `TF_CONFIG`, and this task's."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = config.get("cluster") or {}
    workers = [
        (kind, i)
        for kind in ("chief", "worker")
        for i in range(len(cluster.get(kind) or ()))
    ]
    task = config.get("task") or {}
    if not workers or task.get("type") not in ("chief", "worker"):
        return workers, None
    return workers, (task["type"], int(task.get("index", 0)))


def process_rank() -> int:
    workers, task = _cluster()
    return 0 if task is None else workers.index(task)


def process_count() -> int:
    workers, task = _cluster()
    return 1 if task is None else len(workers)


def is_chief_process() -> bool:
    # As `MultiWorkerMirroredStrategy` decides: the chief task if the
    # cluster has one, else worker 0.
    return process_rank() == 0


# -- data-parallel steps -------------------------------------------------------


def _strategy(model):
    # Keras records the strategy whose scope the model was created in.
    return getattr(model, "_distribute_strategy", None)


def train_step_class(model, optimizer):
    """`StrategyTrainStep` for a model built in a strategy scope, else `None`."""
    strategy = _strategy(model)
    if strategy is None:
        return None
    _check(strategy, model, optimizer)
    return StrategyTrainStep


def minimizer_class(model, optimizer):
    """`StrategyMinimizer` for a model built in a strategy scope, else `None`."""
    strategy = _strategy(model)
    if strategy is None:
        return None
    _check(strategy, model, optimizer)
    return StrategyMinimizer


def prepare_optimizer(model, optimizer) -> None:
    """Refuses an optimizer the model's strategy cannot step; builds it there.

    Called when the updater is built, so that a wrong setup fails before
    training instead of at the first update. The optimizer is built in
    the model's strategy scope, where its slot variables must be made.
    """
    strategy = _strategy(model)
    if strategy is None:
        if model.built and not optimizer.built:
            optimizer.build(model.trainable_variables)
        return
    _check_optimizer(strategy, optimizer)
    if optimizer.built:
        _check_built_in_scope(strategy, optimizer)
    elif model.built:
        with strategy.scope():
            optimizer.build(model.trainable_variables)


def _check_built_in_scope(strategy, optimizer) -> None:
    name = type(strategy).__name__
    outside = [
        v.path
        for v in optimizer.variables
        if not isinstance(v.value, tf.distribute.DistributedValues)
    ]
    if outside:
        raise ValueError(
            f"optimizer must be built inside {name}.scope() (or left unbuilt: "
            "the updater builds it there), so that its slot variables are "
            "mirrored like the model's. Received: an optimizer whose variables "
            f"{outside[:3]} were created outside the scope"
        )


def _check(strategy, model, optimizer) -> None:
    _check_optimizer(strategy, optimizer)
    if strategy.num_replicas_in_sync > 1:
        warn_unsynchronized_batch_norm(model, type(strategy).__name__)


def _check_optimizer(strategy, optimizer) -> None:
    name = type(strategy).__name__
    if getattr(optimizer, "_distribution_strategy", None) is not strategy:
        raise ValueError(
            "optimizer must be created inside the same strategy.scope() as the "
            "model, so that the strategy places and updates its variables: "
            f"create it (and compile the model) under `with {name}.scope():`. "
            f"Received: an optimizer created outside {name}.scope()"
        )
    if strategy.num_replicas_in_sync == 1:
        return
    for attr in ("clipnorm", "global_clipnorm", "clipvalue"):
        if getattr(optimizer, attr, None) is not None:
            raise ValueError(
                f"optimizer {attr} is not supported under {name}: Keras clips each "
                "replica's gradients before summing them, which is not the "
                "clipping of the global gradient. Received: "
                f"{attr}={getattr(optimizer, attr)!r}"
            )
    steps = getattr(optimizer, "gradient_accumulation_steps", None)
    if steps:
        raise ValueError(
            f"optimizer gradient_accumulation_steps is not supported under {name}: "
            "Keras accumulates each replica's gradients without summing them "
            f"across replicas. Received: gradient_accumulation_steps={steps!r}"
        )


def _batched(x) -> bool:
    return x is not None and len(getattr(x, "shape", ())) >= 1


def split_batch(strategy, data, *, allow_empty: bool = False):
    """This process's batch split along axis 0 into one part per local replica.

    Arrays (of at least one dimension) are split; anything else (`None`,
    Python numbers) goes to every replica as it is. With `allow_empty`
    (evaluation) a batch smaller than the number of replicas leaves some
    replicas an empty part.
    """
    local = len(strategy.extended.worker_devices)
    flat = tf.nest.flatten(data)
    sizes = {int(x.shape[0]) for x in flat if _batched(x)}
    if len(sizes) > 1:
        raise ValueError(
            "batch must have one batch size in all its arrays to be split "
            f"across replicas. Received: batch sizes {sorted(sizes)}"
        )
    size = sizes.pop() if sizes else local
    if size < local and not allow_empty:
        raise ValueError(
            f"batch must hold at least one example per replica ({local}). "
            f"Received: a batch of {size}"
        )
    bounds = [size * i // local for i in range(local + 1)]

    def value_fn(context):
        # Replica ids are global; this process holds `local` consecutive ones.
        i = context.replica_id_in_sync_group % local
        lo, hi = bounds[i], bounds[i + 1]
        parts = [tf.convert_to_tensor(x[lo:hi]) if _batched(x) else x for x in flat]
        return tf.nest.pack_sequence_as(data, parts)

    return strategy.experimental_distribute_values_from_function(value_fn)


def _metric_reset_values(model) -> list:
    """The metric variables' values right after a reset, read from one replica.

    Metric variables are sync-on-read under a strategy: reading one in
    cross-replica context sums the replicas, which is not the initial value.
    """
    for metric in model.metrics:
        metric.reset_state()
    values = []
    for variable in model.metrics_variables:
        value = variable.value
        value = value.values[0] if hasattr(value, "values") else value
        values.append(tf.constant(value.numpy()))
    return values


class _Packer:
    """Packs a structure of tensors into one float32 vector, and back.

    Reported values are reduced across replicas (and workers) in one
    collective instead of one per key.
    """

    def __init__(self) -> None:
        self._spec = None

    def pack(self, values):
        flat = [tf.convert_to_tensor(v) for v in tf.nest.flatten(values)]
        self._spec = (values, [(v.shape, v.dtype) for v in flat])
        if not flat:
            return tf.zeros([0])
        return tf.concat([tf.reshape(tf.cast(v, tf.float32), [-1]) for v in flat], 0)

    def unpack(self, packed):
        structure, specs = self._spec
        sizes = [shape.num_elements() for shape, _ in specs]
        pieces = tf.split(packed, sizes) if specs else []
        out = [
            tf.cast(tf.reshape(p, shape), dtype)
            for p, (shape, dtype) in zip(pieces, specs)
        ]
        return tf.nest.pack_sequence_as(structure, out)


class StrategyTrainStep:
    """One step under the model's `tf.distribute` strategy, as `fit` runs it.

    The batch (the global batch in one process, this worker's share under
    `MultiWorkerMirroredStrategy`) is split along its first axis, one part
    per replica; `strategy.run` runs the model's `train_step` (or the
    custom loss) on each part inside one `tf.function`; the loss is scaled
    as Keras scales it (a Keras loss in a replica divides by the number of
    replicas), and `optimizer.apply` sums the gradients across replicas.
    The logs are the means over all replicas, reduced in one collective.
    """

    def __init__(self, model, optimizer, loss_fn=None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.strategy = _strategy(model)
        self._loss_fn = loss_fn
        self._packer = _Packer()
        self._fn = None

    def _build(self, data):
        model, optimizer = self.model, self.optimizer
        with self.strategy.scope():
            if self._loss_fn is None:
                require_built(model, data)
                inits = _metric_reset_values(model)
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
        if self._loss_fn is None:
            metric_vars = list(model.metrics_variables)

            def replica_step(data):
                for variable, init in zip(metric_vars, inits):
                    variable.assign(init)
                return self._packer.pack(model.train_step(data))

        else:
            replica_step = self._custom_replica_step
        strategy = self.strategy

        def step(data):
            packed = strategy.run(replica_step, args=(data,))
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, packed, axis=None)

        return tf.function(step, reduce_retracing=True, autograph=False)

    def _custom_replica_step(self, data):
        # As in Keras: a Keras loss called in a replica already divides its
        # mean by the number of replicas (so that `apply`, which sums the
        # replicas' gradients, follows the global mean); the loss returned
        # is taken as that, and reported unscaled, as `fit` reports it.
        variables = self.model.trainable_variables
        replicas = self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss, observations = self._loss_fn(data)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, [v.value for v in variables])
        self.optimizer.apply(grads, variables)
        return self._packer.pack((loss * replicas, observations))

    def __call__(self, data):
        if self._fn is None:
            self._fn = self._build(data)
        packed = self._fn(split_batch(self.strategy, data))
        return self._packer.unpack(packed)

    def sync(self) -> None:
        """Nothing to do: the strategy updates the variables in place."""


class StrategyMinimizer:
    """`minimize` under the model's strategy: the custom-loss counterpart.

    The arguments' arrays are split along axis 0 over the replicas; each
    replica differentiates the loss with respect to `model`'s trainable
    variables and `optimizer.apply` sums the replicas' gradients. The
    loss is taken as Keras scales it in a replica (a Keras loss divides
    its mean by the number of replicas) and reported unscaled; the loss
    and observations returned are means over all replicas, reduced in
    one collective. Other models the loss calls are read, not stepped.
    """

    def __init__(self, model, optimizer, others, loss_fn) -> None:
        del others  # read through the loss; nothing of theirs is stepped
        self.model = model
        self.optimizer = optimizer
        self.strategy = _strategy(model)
        self._loss_fn = loss_fn
        self._packer = _Packer()
        with self.strategy.scope():
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
        strategy = self.strategy

        def step(data):
            packed = strategy.run(self._replica_step, args=(data,))
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, packed, axis=None)

        self._fn = tf.function(step, reduce_retracing=True, autograph=False)

    def _replica_step(self, data):
        args, kwargs = data
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss, observations = self._loss_fn(args, kwargs)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, [v.value for v in variables])
        self.optimizer.apply(grads, variables)
        replicas = self.strategy.num_replicas_in_sync
        return self._packer.pack((loss * replicas, observations))

    def __call__(self, args, kwargs):
        data = split_batch(self.strategy, (tuple(args), dict(kwargs)))
        return self._packer.unpack(self._fn(data))


# -- evaluation ----------------------------------------------------------------


def test_step_class(model):
    """`StrategyTestStep` for a model built in a strategy scope, else `None`."""
    if _strategy(model) is None:
        return None
    return StrategyTestStep


class StrategyTestStep:
    """The model's `test_step` on this process's batches, split over replicas.

    Each batch is split along its first axis over the local replicas (a
    batch smaller than the others included, a replica's part may be
    empty) and `strategy.run` runs `test_step` on each part inside one
    `tf.function`; every replica accumulates its own metric states (Keras
    makes them sync-on-read sums). Nothing in the step talks to other
    processes, so processes may evaluate different numbers of examples;
    `metric_values()` reads this process's states summed over its
    replicas, and the Evaluator sums them over processes in one
    collective.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.strategy = _strategy(model)
        self._fn = None

    def reset(self) -> None:
        with self.strategy.scope():
            for metric in self.model.metrics:
                metric.reset_state()

    def _build(self, data):
        model, strategy = self.model, self.strategy
        with strategy.scope():
            require_built(model, data)

        def replica_step(data):
            model.test_step(data)  # its logs are per replica: not returned

        def step(data):
            strategy.run(replica_step, args=(data,))

        return tf.function(step, reduce_retracing=True, autograph=False)

    def __call__(self, data) -> None:
        if self._fn is None:
            self._fn = self._build(data)
            self.reset()
        self._fn(split_batch(self.strategy, data, allow_empty=True))

    def metric_values(self) -> list:
        """This process's metric states (over its replicas), as numpy arrays."""
        return [_local_value(v.value) for v in self.model.metrics_variables]

    def result(self) -> dict:
        return metrics_result(self.model, self.metric_values())


def _local_value(variable) -> np.ndarray:
    """A sync-on-read variable's value over this process's replicas.

    Read from each local component (reading the variable itself in
    cross-replica context would reduce over all workers, one collective
    per variable).
    """
    parts = [np.asarray(c.numpy()) for c in getattr(variable, "values", (variable,))]
    aggregation = getattr(variable, "aggregation", tf.VariableAggregation.SUM)
    if aggregation == tf.VariableAggregation.SUM:
        return np.sum(parts, axis=0).astype(parts[0].dtype)
    # The Evaluator sums over processes: each gives its share of a mean,
    # the chief alone the value of a variable read from one replica.
    if aggregation == tf.VariableAggregation.MEAN:
        return (np.mean(parts, axis=0) / process_count()).astype(parts[0].dtype)
    return parts[0] if process_rank() == 0 else np.zeros_like(parts[0])


_SUM_FUNCTIONS: dict = {}


def sum_over_processes(vector: np.ndarray, models=()) -> np.ndarray:
    """The element-wise sum of a float64 vector over processes, one collective.

    Reduced by the `MultiWorkerMirroredStrategy` the models were built in
    (or the current one): only the first local replica of each process
    contributes its vector.
    """
    vector = np.ascontiguousarray(vector, dtype=np.float64)
    if process_count() == 1:
        return vector
    strategies = [s for s in map(_strategy, models) if s is not None]
    if not strategies and tf.distribute.has_strategy():
        strategies = [tf.distribute.get_strategy()]
    strategy = strategies[0] if strategies else None
    local = len(strategy.extended.worker_devices) if strategy is not None else 0
    if strategy is None or strategy.num_replicas_in_sync <= local:
        raise RuntimeError(
            "target must hold a model built in a MultiWorkerMirroredStrategy "
            "scope for an Evaluator in a run of several TensorFlow processes: "
            "its collectives reduce the results over the processes. Received: "
            f"no such model among {process_count()} processes"
        )
    fn = _SUM_FUNCTIONS.get(id(strategy))
    if fn is None:

        def reduce(values):
            return strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)

        fn = _SUM_FUNCTIONS[id(strategy)] = (
            strategy,
            tf.function(reduce, reduce_retracing=True, autograph=False),
        )
    tensor = tf.constant(vector)

    def value_fn(context):
        first = context.replica_id_in_sync_group % local == 0
        return tensor if first else tf.zeros_like(tensor)

    values = strategy.experimental_distribute_values_from_function(value_fn)
    return np.asarray(fn[1](values).numpy(), dtype=np.float64)


def reduces_reports() -> bool:
    """Reported values are already means over replicas: the step reduces them."""
    return False


def mean_over_processes(values: dict) -> dict:
    return dict(values)
