"""TensorFlow: devices, `TF_CONFIG` processes and `tf.distribute` steps."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from ktrainer._backend._common import require_built
from ktrainer._backend._distribute_common import warn_unsynchronized_batch_norm


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


def _check(strategy, model, optimizer) -> None:
    _check_optimizer(strategy, optimizer)
    if strategy.num_replicas_in_sync > 1:
        warn_unsynchronized_batch_norm(model, type(strategy).__name__)


def _check_optimizer(strategy, optimizer) -> None:
    name = type(strategy).__name__
    if getattr(optimizer, "_distribution_strategy", None) is not strategy:
        raise ValueError(
            "optimizer must be created inside the same strategy.scope() as the "
            "model, so that the strategy places and updates its variables. "
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


def split_batch(strategy, data):
    """This process's batch split along axis 0 into one part per local replica.

    Arrays (of at least one dimension) are split; anything else (`None`,
    Python numbers) goes to every replica as it is.
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
    if size < local:
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


def reduces_reports() -> bool:
    """Reported values are already means over replicas: the step reduces them."""
    return False


def mean_over_processes(values: dict) -> dict:
    return dict(values)
