"""Data-parallel training with ktrainer on each backend's own engine.

The model is the MLP of `examples/mnist`, trained on scikit-learn's digits.
Distribution is set up exactly as for Keras's `fit`; ktrainer needs
nothing more:

- tensorflow: the model is built and compiled in `strategy.scope()`,
  `MirroredStrategy` over this machine's devices, or
  `MultiWorkerMirroredStrategy` when `TF_CONFIG` names a cluster;
- jax: `keras.distribution.set_distribution(DataParallel())` before the
  model is built (with `keras.distribution.initialize()` first when
  several processes run, from the `KERAS_DISTRIBUTION_*` variables);
- torch: `torch.distributed.init_process_group()` in each process
  (gloo on CPUs, nccl on GPUs), from the variables `torchrun` sets.

Each process iterates over its share of the data
(`ktrainer.distributed.scatter_dataset`) with `--batchsize` divided
by the number of processes, so the global batch stays `--batchsize`;
only the chief process writes `--out`.

    KERAS_BACKEND=tensorflow python examples/distributed/train_data_parallel.py \\
        --cpu-devices 2
    KERAS_BACKEND=jax python examples/distributed/train_data_parallel.py \\
        --cpu-devices 2
    KERAS_BACKEND=torch torchrun --nproc-per-node 2 \\
        examples/distributed/train_data_parallel.py

Several processes on one machine (or several machines): under jax set
`KERAS_DISTRIBUTION_JOB_ADDRESSES=host:port` (the coordinator),
`KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID` in
each; under tensorflow set `TF_CONFIG` in each, as for
`MultiWorkerMirroredStrategy`.

Every process evaluates the whole validation set, so the Evaluator
reports the same global results in every process.

`--cpu-devices N` splits the host into N devices (logical CPUs under
tensorflow, `--xla_force_host_platform_device_count` under jax) to try
it without accelerators; it must be applied before the engine starts,
which is why this script imports Keras only after parsing its flags.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epoch", "-e", type=int, default=5)
    parser.add_argument("--batchsize", "-b", type=int, default=64)
    parser.add_argument("--unit", "-u", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", "-o", default="result")
    parser.add_argument("--cpu-devices", type=int, default=0)
    parser.add_argument("--max-iterations", type=int, default=None)
    return parser.parse_args(argv)


def configure_engine(backend: str, cpu_devices: int):
    """Sets the engine's distribution up; returns a scope to build the model in."""
    if backend == "jax":
        if cpu_devices:
            flag = f"--xla_force_host_platform_device_count={cpu_devices}"
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}"
        import keras

        if "KERAS_DISTRIBUTION_NUM_PROCESSES" in os.environ:
            import jax  # noqa: TID251

            # CPU devices of different processes reduce through gloo.
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            keras.distribution.initialize()
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: TID251

        if cpu_devices:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices
            )
        if "TF_CONFIG" in os.environ:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        elif cpu_devices:
            devices = [f"/cpu:{i}" for i in range(cpu_devices)]
            strategy = tf.distribute.MirroredStrategy(devices)
        else:
            strategy = tf.distribute.MirroredStrategy()
        return strategy.scope()
    if backend == "torch":
        import torch  # noqa: TID251
        import torch.distributed as dist  # noqa: TID251

        if "WORLD_SIZE" in os.environ:
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return contextlib.nullcontext()
    raise SystemExit(f"unsupported KERAS_BACKEND={backend!r}")


def load_data():
    """scikit-learn's digits: `(x_train, y_train), (x_test, y_test)`."""
    import numpy as np
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype("float32"), y.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1500], y[:1500]), (x[1500:], y[1500:])


def build_model(n_units: int, lr: float):
    import keras

    model = keras.Sequential(
        [
            keras.Input((64,), name="x"),
            keras.layers.Dense(n_units, activation="relu", name="l1"),
            keras.layers.Dense(n_units, activation="relu", name="l2"),
            keras.layers.Dense(10, name="l3"),
        ],
        name="mlp",
    )
    model.compile(
        optimizer=keras.optimizers.SGD(lr, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def replicas(backend: str, model) -> int:
    """How many model replicas train together (devices times processes)."""
    import keras

    from ktrainer import distributed

    if backend == "tensorflow":
        return model.distribute_strategy.num_replicas_in_sync
    if backend == "jax":
        return len(keras.distribution.distribution().device_mesh.devices.flat)
    return distributed.world_size()


def main(argv=None) -> dict:
    args = parse_args(argv)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    scope = configure_engine(backend, args.cpu_devices)

    import keras

    from ktrainer import StandardUpdater, Trainer, distributed
    from ktrainer.dataset import TupleDataset
    from ktrainer.iterators import SerialIterator
    from ktrainer.training import extensions

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_data()
    world = distributed.world_size()
    train = distributed.scatter_dataset(TupleDataset(x_train, y_train))
    test = TupleDataset(x_test, y_test)  # whole: every process reports the same
    batch = max(1, args.batchsize // world)
    with scope:
        model = build_model(args.unit, args.lr)
        updater = StandardUpdater(SerialIterator(train, batch), model)
    # A smoke run (--max-iterations) logs and evaluates once, at its end.
    every = (args.max_iterations, "iteration") if args.max_iterations else None
    stop = every or (args.epoch, "epoch")
    trainer = Trainer(updater, stop, out=args.out)
    trainer.extend(
        extensions.Evaluator(SerialIterator(test, batch, repeat=False), model),
        trigger=every or (1, "epoch"),
    )
    trainer.extend(extensions.LogReport(trigger=every or (1, "epoch")))
    trainer.extend(
        extensions.PrintReport(
            ["epoch", "main/loss", "main/accuracy", "validation/main/accuracy"]
        )
    )
    trainer.extend(extensions.snapshot(n_retains=1), trigger=(1, "epoch"))
    if distributed.is_chief():
        print(
            f"{backend}: {replicas(backend, model)} replicas, {world} "
            f"process(es), global batch {batch * world}",
            flush=True,
        )
    trainer.run()
    last = trainer.get_extension("LogReport").log[-1]
    if distributed.is_chief():
        print("LAST " + json.dumps(last), flush=True)
    return last


if __name__ == "__main__":
    main()
