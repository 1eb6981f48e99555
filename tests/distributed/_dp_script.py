"""A small data-parallel training run, shared by the distributed tests.

Run as a script it sets up one of the engines' distribution modes (before
the engine initializes), trains, and prints one JSON line of results;
imported, `train()` runs the same training on one device as the
reference. Usage: `python _dp_script.py MODE OUT [RANK WORLD PORT]`; each run
trains a compiled model and a custom `loss_func` under `OUT/<kind>`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

import numpy as np

N_EXAMPLES, N_IN, N_OUT, GLOBAL_BATCH, ITERATIONS = 32, 6, 3, 8, 6
SHARD_SHAPES: list = []  # under jax: the shards of a batch the step got
# A validation set not divisible by 2 processes, nor its batches by 2 replicas.
N_VALID, VALID_BATCH = 13, 5


def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N_EXAMPLES, N_IN)).astype("float32")
    y = (np.argmax(x[:, :N_OUT], axis=1)).astype("int32")
    return x, y


def validation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N_VALID, N_IN)).astype("float32")
    y = (np.argmax(x[:, :N_OUT], axis=1) + (np.arange(N_VALID) % 4 == 0)) % N_OUT
    return x, y.astype("int32")


def reference_evaluation(weights) -> dict:
    """One device: `model.evaluate` over the whole validation set."""
    model, _ = build_model(False)
    model.set_weights([np.asarray(w, "float32") for w in weights])
    x, y = validation()
    logs = model.evaluate(x, y, batch_size=VALID_BATCH, return_dict=True, verbose=0)
    return {f"main/{k}": float(v) for k, v in logs.items()}


def _sizes_seen():
    """Patches the distributed test step to record the parts of each batch.

    Returns the list it fills and a function undoing the patch.
    """
    import keras

    seen: list = []
    undo = [lambda: None]
    if keras.config.backend() == "tensorflow":
        from ktrainer._backend import tensorflow_distribute as td

        split = td.split_batch

        def recording(strategy, data, **kwargs):
            values = split(strategy, data, **kwargs)
            first = values[0] if isinstance(values, tuple) else values
            parts = getattr(first, "values", (first,))
            seen.append([int(p.shape[0]) for p in parts])
            return values

        td.split_batch = recording
        undo[0] = lambda: setattr(td, "split_batch", split)
    elif keras.config.backend() == "jax":
        from ktrainer._backend import jax_distribute as jd

        place = jd.ShardedTestStep._place

        def recording(self, data, lo, hi, split):
            placed = place(self, data, lo, hi, split)
            x = keras.tree.flatten(placed)[0]
            seen.append(
                [int(x.shape[0]), int(x.sharding.shard_shape(x.shape)[0]), split]
            )
            return placed

        jd.ShardedTestStep._place = recording
        undo[0] = lambda: setattr(jd.ShardedTestStep, "_place", place)
    return seen, undo[0]


def evaluations(model) -> dict:
    """The Evaluator's results on the validation set, given it several ways.

    With several processes: the whole set (split by the Evaluator), a
    `scatter_dataset` share (recognized), a part of one's own
    (`scattered=True`), and an `eval_func`; collectives are counted.
    """
    import keras

    from ktrainer import distributed, report
    from ktrainer._backend import distribute
    from ktrainer.dataset import TupleDataset
    from ktrainer.iterators import SerialIterator
    from ktrainer.training.extensions import Evaluator

    calls = {"sum": 0, "all_reduce": 0}
    summing = distribute.sum_over_processes

    def counted(*args, **kwargs):
        calls["sum"] += 1
        return summing(*args, **kwargs)

    distribute.sum_over_processes = counted
    if keras.config.backend() == "torch":
        import torch.distributed as dist  # noqa: TID251

        all_reduce = dist.all_reduce

        def counted_all_reduce(*args, **kwargs):
            calls["all_reduce"] += 1
            return all_reduce(*args, **kwargs)

        dist.all_reduce = counted_all_reduce
    seen, undo = _sizes_seen()
    x, y = validation()
    rank, world = distributed.rank(), distributed.world_size()

    def iterator(dataset):
        return SerialIterator(dataset, VALID_BATCH, repeat=False, shuffle=False)

    def eval_func(x, y):
        logits = model(x, training=False)
        # The functional loss: a Keras `Loss` object called in a strategy
        # scope divides by the number of replicas (Keras's loss scaling).
        per_example = keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True
        )
        report({"loss": keras.ops.mean(per_example)}, model)

    out = {}
    evaluator = Evaluator(iterator(TupleDataset(x, y)), model)
    out["whole"] = evaluator()
    out["whole_again"] = evaluator()  # the same again (metrics reset)
    out["calls_per_evaluation"] = dict(calls)
    out["sizes_seen"] = list(seen)
    undo()
    if world > 1:
        share = distributed.scatter_dataset(TupleDataset(x, y))
        out["scattered"] = Evaluator(iterator(share), model)()
        out["own"] = Evaluator(
            (x[rank::world], y[rank::world]), model, scattered=True
        )()
    calls.update(sum=0, all_reduce=0)
    out["eval_func"] = Evaluator(
        iterator(TupleDataset(x, y)), {"main": model}, eval_func=eval_func
    )()
    out["eval_func_calls"] = dict(calls)
    distribute.sum_over_processes = summing
    if keras.config.backend() == "torch":
        dist.all_reduce = all_reduce
    return out


def build_model(custom: bool):
    import keras

    model = keras.Sequential(
        [
            keras.Input((N_IN,), name="x"),
            keras.layers.Dense(5, activation="tanh", name="hidden"),
            keras.layers.Dense(N_OUT, name="logits"),
        ],
        name="net",
    )
    rng = np.random.default_rng(2)
    model.set_weights(
        [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in model.weights]
    )
    # SGD with momentum: a gradient off by a factor would show (Adam hides it).
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    if custom:
        return model, optimizer
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model, None


def make_updater(custom: bool, dataset, batch_size: int):
    import keras

    import ktrainer
    from ktrainer.iterators import SerialIterator

    model, optimizer = build_model(custom)
    iterator = SerialIterator(dataset, batch_size, shuffle=False)
    if not custom:
        return ktrainer.StandardUpdater(iterator, model), model
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_func(x, y):
        loss = loss_fn(y, model(x, training=True))
        # What one replica (or process) sees of the batch.
        ktrainer.report({"examples": keras.ops.shape(x)[0]}, model)
        if keras.config.backend() == "jax":
            _record_shards(x)
        return loss

    updater = ktrainer.StandardUpdater(
        iterator, optimizer, model=model, loss_func=loss_func
    )
    return updater, model


def _record_shards(x) -> None:
    import jax  # noqa: TID251

    # Called while the step is traced: the sharding the step computes with.
    jax.debug.inspect_array_sharding(
        x, callback=lambda s: SHARD_SHAPES.append(list(s.shard_shape(x.shape)))
    )


def train(
    custom: bool,
    out: str,
    share=None,
    batch_size: int = GLOBAL_BATCH,
    order=None,
    evaluate: bool = False,
):
    """Trains ITERATIONS steps with a log and a final snapshot; returns results."""
    from ktrainer import Trainer
    from ktrainer.dataset import TupleDataset
    from ktrainer.iterators import SerialIterator
    from ktrainer.training import extensions

    x, y = data()
    if order is not None:
        x, y = x[order], y[order]
    dataset = share if share is not None else TupleDataset(x, y)
    updater, model = make_updater(custom, dataset, batch_size)
    trainer = Trainer(updater, (ITERATIONS, "iteration"), out=out)
    if not custom:
        # Every process is given the whole (unshuffled) validation set and
        # evaluates its part; a last batch smaller than the others included.
        xv, yv = data()
        validation = SerialIterator(
            TupleDataset(xv[:12], yv[:12]), 5, repeat=False, shuffle=False
        )
        trainer.extend(
            extensions.Evaluator(validation, model), trigger=(2, "iteration")
        )
    trainer.extend(extensions.LogReport(trigger=(2, "iteration")))
    trainer.extend(extensions.snapshot(), trigger=(ITERATIONS, "iteration"))
    trainer.run()
    result = {
        "weights": [w.tolist() for w in model.get_weights()],
        "log": trainer.get_extension("LogReport").log,
    }
    if evaluate and not custom:
        result["evaluations"] = evaluations(model)
    return result


def resume_on_one_device(
    custom: bool, snapshot: str, order=None, share=None, batch_size=GLOBAL_BATCH
) -> dict:
    """Loads a snapshot into a fresh updater, trains 2 more iterations.

    Run on one device here (over the examples in `order`); the
    single-process distributed modes also run it in their distribution,
    and the multi-process ones over each process's `share` with its
    `batch_size`, so a snapshot resumes there too, whatever number of
    processes wrote it.
    """
    from ktrainer.dataset import TupleDataset
    from ktrainer.serializers import load_hdf5
    from ktrainer.training import Trainer

    x, y = data()
    if order is not None:
        x, y = x[order], y[order]
    dataset = share if share is not None else TupleDataset(x, y)
    updater, model = make_updater(custom, dataset, batch_size)
    trainer = Trainer(updater, (ITERATIONS + 2, "iteration"))
    load_hdf5(snapshot, trainer)
    loaded = [w.tolist() for w in model.get_weights()]
    iteration = updater.iteration
    it = updater.get_iterator()
    position = [it.epoch, it.current_position, it.epoch_detail, it.is_new_epoch]
    trainer.run()
    return {
        "weights": loaded,
        "iteration": iteration,
        "position": position,
        "continued": [w.tolist() for w in model.get_weights()],
    }


def guard_messages(scope_factory) -> dict:
    """What building the updater (or its first update) says for bad settings.

    `scope_factory()` enters the distribution's scope (a strategy scope);
    the optimizer of the `outside` case is made outside it. The updater of
    `updater_outside_scope` is built outside it (and builds the optimizer
    in it).
    """
    import warnings

    import keras

    import ktrainer
    from ktrainer.dataset import TupleDataset
    from ktrainer.iterators import SerialIterator

    def first_update(optimizer, batch_norm=False):
        with scope_factory():
            layers = [keras.Input((N_IN,)), keras.layers.Dense(4)]
            if batch_norm:
                layers.append(keras.layers.BatchNormalization())
            model = keras.Sequential([*layers, keras.layers.Dense(N_OUT)])
            model.compile(
                optimizer=optimizer() if callable(optimizer) else optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            it = SerialIterator(TupleDataset(*data()), GLOBAL_BATCH)
            try:
                # Settings the strategy cannot step fail here, not later.
                updater = ktrainer.StandardUpdater(it, model)
            except ValueError as error:
                return f"ValueError: {error}"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    updater.update()
                except ValueError as error:
                    return f"ValueError at the first update: {error}"
            ours = [w for w in caught if issubclass(w.category, UserWarning)]
            return " | ".join(str(w.message) for w in ours) or "trained"

    return {
        "clipnorm": first_update(lambda: keras.optimizers.SGD(0.1, clipnorm=1.0)),
        "global_clipnorm": first_update(
            lambda: keras.optimizers.SGD(0.1, global_clipnorm=1.0)
        ),
        "accumulation": first_update(
            lambda: keras.optimizers.SGD(0.1, gradient_accumulation_steps=2)
        ),
        "outside": first_update(keras.optimizers.SGD(0.1)),
        "updater_outside_scope": _updater_outside_scope(scope_factory),
        "batch_norm": first_update(lambda: keras.optimizers.SGD(0.1), True),
    }


def _updater_outside_scope(scope_factory) -> str:
    """A model built in the scope, its updater (and optimizer build) outside."""
    import keras

    import ktrainer
    from ktrainer.dataset import TupleDataset
    from ktrainer.iterators import SerialIterator

    with scope_factory():
        model = keras.Sequential([keras.Input((N_IN,)), keras.layers.Dense(N_OUT)])
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    it = SerialIterator(TupleDataset(*data()), GLOBAL_BATCH)
    updater = ktrainer.StandardUpdater(it, model)
    updater.update()
    return "trained"


# -- engine setup, run as a script ------------------------------------------------


def _tensorflow_mirrored():
    import tensorflow as tf  # noqa: TID251

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _torch_gloo(rank: int, world: int, port: int) -> None:
    import torch.distributed as dist  # noqa: TID251

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )


def _snapshot(directory: str, kind: str) -> str:
    return os.path.join(directory, f"reference-{kind}", f"snapshot_iter_{ITERATIONS}")


def interleaved_order(world: int) -> np.ndarray:
    """The example order whose global batches are those of `world` processes.

    Process `r` steps on its share's `k`-th batch at step `k`; the global
    batch `k` is those batches side by side.
    """
    from ktrainer.distributed._scatter import shard_indices

    shares = [shard_indices(N_EXAMPLES, r, world) for r in range(world)]
    local = GLOBAL_BATCH // world
    steps = len(shares[0]) // local
    return np.concatenate(
        [s[k * local : (k + 1) * local] for k in range(steps) for s in shares]
    )


def main(mode: str, out: str, *process: str) -> None:
    import keras

    results = {}
    # Multi-process modes: a directory of a one-device run's snapshots,
    # which every process then resumes.
    reference = os.environ.get("KTRAINER_TEST_REFERENCE")
    if mode == "torch-gloo":
        rank, world, port = (int(p) for p in process)
        _torch_gloo(rank, world, port)
    elif mode == "jax-multiprocess":
        import jax  # noqa: TID251

        rank, world, port = (int(p) for p in process)
        # CPU devices of different processes reduce through gloo.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        keras.distribution.initialize(
            f"127.0.0.1:{port}", num_processes=world, process_id=rank
        )
    for kind in ("compiled", "custom"):
        custom = kind == "custom"
        where = os.path.join(out, kind)
        if mode == "tf-mirrored":
            if not results:
                strategy = _tensorflow_mirrored()
            with strategy.scope():
                # Model and optimizer are built in the scope, as Keras asks.
                results[kind] = train(custom, where, evaluate=True)
                results[kind]["resumed"] = resume_on_one_device(
                    custom, os.path.join(where, f"snapshot_iter_{ITERATIONS}")
                )
            results["replicas"] = strategy.num_replicas_in_sync
            if custom:
                results["guards"] = guard_messages(strategy.scope)
        elif mode == "tf-multiworker":
            import tensorflow as tf  # noqa: TID251

            from ktrainer import distributed
            from ktrainer.dataset import TupleDataset

            if not results:
                # Reads TF_CONFIG; must come before any other TensorFlow op.
                strategy = tf.distribute.MultiWorkerMirroredStrategy()
            share = distributed.scatter_dataset(TupleDataset(*data()))
            batch = GLOBAL_BATCH // distributed.world_size()
            with strategy.scope():
                results[kind] = train(
                    custom, where, share=share, batch_size=batch, evaluate=True
                )
                if reference is not None:
                    results[kind]["resumed_from_one"] = resume_on_one_device(
                        custom,
                        _snapshot(reference, kind),
                        share=share,
                        batch_size=batch,
                    )
            results["replicas"] = strategy.num_replicas_in_sync
            results["rank"] = distributed.rank()
            results["world_size"] = distributed.world_size()
            results["chief"] = distributed.is_chief()
        elif mode == "torch-gloo":
            from ktrainer import distributed
            from ktrainer.dataset import TupleDataset

            share = distributed.scatter_dataset(TupleDataset(*data()))
            batch = GLOBAL_BATCH // distributed.world_size()
            results[kind] = train(
                custom, where, share=share, batch_size=batch, evaluate=True
            )
            if reference is not None:
                results[kind]["resumed_from_one"] = resume_on_one_device(
                    custom, _snapshot(reference, kind), share=share, batch_size=batch
                )
            results["rank"] = distributed.rank()
            results["world_size"] = distributed.world_size()
            results["chief"] = distributed.is_chief()
            if custom:
                results["guards"] = guard_messages(contextlib.nullcontext)
        elif mode == "jax-multiprocess":
            from ktrainer import distributed
            from ktrainer.dataset import TupleDataset

            distribution = keras.distribution.DataParallel()
            keras.distribution.set_distribution(distribution)
            share = distributed.scatter_dataset(TupleDataset(*data()))
            batch = GLOBAL_BATCH // distributed.world_size()
            results[kind] = train(
                custom, where, share=share, batch_size=batch, evaluate=True
            )
            if reference is not None:
                results[kind]["resumed_from_one"] = resume_on_one_device(
                    custom, _snapshot(reference, kind), share=share, batch_size=batch
                )
            results["replicas"] = len(distribution.device_mesh.devices.flat)
            results["shard_shapes"] = SHARD_SHAPES
            results["rank"] = distributed.rank()
            results["world_size"] = distributed.world_size()
            results["chief"] = distributed.is_chief()
        elif mode == "jax-dp":
            distribution = keras.distribution.DataParallel()
            keras.distribution.set_distribution(distribution)
            results[kind] = train(custom, where, evaluate=True)
            results[kind]["resumed"] = resume_on_one_device(
                custom, os.path.join(where, f"snapshot_iter_{ITERATIONS}")
            )
            results["replicas"] = len(distribution.device_mesh.devices.flat)
            results["shard_shapes"] = SHARD_SHAPES
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    results["backend"] = keras.config.backend()
    print("RESULT " + json.dumps(results), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main(*sys.argv[1:])
