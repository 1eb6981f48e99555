"""Train an MLP classifier with ktrainer's Trainer (Chainer's train_mnist.py).

Runs out of the box on scikit-learn's bundled 8x8 digits; pass
`--dataset path/to/mnist.npz` (arrays `x_train`, `y_train`, `x_test`,
`y_test`, as `keras.datasets.mnist` stores them) for real MNIST.
Works under whichever `KERAS_BACKEND` is set.

    KERAS_BACKEND=jax python examples/mnist/train_mnist.py --epoch 10
    KERAS_BACKEND=jax python examples/mnist/train_mnist.py --epoch 20 --autoload
    KERAS_BACKEND=torch python examples/mnist/train_mnist.py \
        --resume result/snapshot_iter_235 --epoch 20

It prints a table per epoch and writes `log`, `loss.png`,
`accuracy.png`, `snapshot_iter_<iteration>` files and the trained
weights `model.h5` to `--out`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import keras
import numpy as np

import ktrainer
from ktrainer import serializers
from ktrainer.dataset import TupleDataset
from ktrainer.iterators import SerialIterator
from ktrainer.training import extensions

logger = logging.getLogger("train_mnist")


def load_data(path: str | None):
    """Returns `(x_train, y_train), (x_test, y_test)` as float32/int32."""
    if path is None:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype("float32")
        y = y.astype("int32")
        rng = np.random.default_rng(0)
        order = rng.permutation(len(x))
        x, y = x[order], y[order]
        return (x[:1500], y[:1500]), (x[1500:], y[1500:])
    with np.load(path, allow_pickle=False) as f:

        def prep(a):
            return (a.reshape(len(a), -1) / 255.0).astype("float32")

        return (
            (prep(f["x_train"]), f["y_train"].astype("int32")),
            (prep(f["x_test"]), f["y_test"].astype("int32")),
        )


def build_model(n_in: int, n_units: int, n_out: int, lr: float) -> keras.Model:
    # Explicit names keep variable paths stable, so snapshots load back.
    model = keras.Sequential(
        [
            keras.Input((n_in,), name="x"),
            keras.layers.Dense(n_units, activation="relu", name="l1"),
            keras.layers.Dropout(0.1, name="drop"),
            keras.layers.Dense(n_units, activation="relu", name="l2"),
            keras.layers.Dense(n_out, name="l3"),
        ],
        name="mlp",
    )
    model.compile(
        optimizer=keras.optimizers.SGD(lr, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def parse_device_arg(value: str):
    """Lets `--device 0` and `--device -1` mean the ints Chainer used."""
    try:
        return int(value)
    except ValueError:
        return value


class _StderrHandler(logging.Handler):
    """Writes records to whatever `sys.stderr` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def setup_logging() -> None:
    """Shows this script's and ktrainer's INFO messages.

    ktrainer's `snapshot(autoload=True)` logs which snapshot it resumed
    from, at which iteration and epoch; `--resume` logs the same here.

    The handler sits on the two loggers themselves: tensorflow's absl
    takes over the root logger and would drop INFO records.
    """
    for name in ("train_mnist", "ktrainer"):
        named = logging.getLogger(name)
        named.setLevel(logging.INFO)
        named.propagate = False
        if not any(isinstance(h, _StderrHandler) for h in named.handlers):
            handler = _StderrHandler()
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            named.addHandler(handler)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--batchsize", "-b", type=int, default=64, help="examples per batch"
    )
    parser.add_argument("--epoch", "-e", type=int, default=10, help="epochs to train")
    parser.add_argument(
        "--frequency",
        "-f",
        type=int,
        default=1,
        help="take a snapshot every this many epochs; -1: only at the end",
    )
    parser.add_argument(
        "--device",
        "-d",
        default=None,
        type=parse_device_arg,
        help="-1 or 'cpu' for the host, 0, 'gpu' or 'gpu:N' for an accelerator "
        "(default: Keras's placement)",
    )
    parser.add_argument("--out", "-o", default="result", help="output folder")
    parser.add_argument(
        "--resume", "-r", default=None, help="snapshot file to resume from"
    )
    parser.add_argument(
        "--autoload",
        action="store_true",
        help="resume from the newest snapshot in --out",
    )
    parser.add_argument(
        "--unit", "-u", type=int, default=128, help="units per hidden layer"
    )
    parser.add_argument("--lr", type=float, default=0.05, help="initial learning rate")
    parser.add_argument(
        "--dataset",
        default=None,
        help="an mnist.npz to train on instead of scikit-learn's digits",
    )
    parser.add_argument(
        "--max-iterations",
        type=int,
        default=None,
        help="stop after this many iterations (smoke runs)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar"
    )
    args = parser.parse_args(argv)
    if args.resume and args.autoload:
        parser.error("give either --resume or --autoload, not both")
    keras.utils.set_random_seed(0)

    (x_train, y_train), (x_test, y_test) = load_data(args.dataset)
    model = build_model(x_train.shape[1], args.unit, 10, args.lr)

    train_iter = SerialIterator(TupleDataset(x_train, y_train), args.batchsize)
    test_iter = SerialIterator(
        TupleDataset(x_test, y_test), 256, repeat=False, shuffle=False
    )
    updater = ktrainer.StandardUpdater(train_iter, model, device=args.device)
    stop = (
        (args.max_iterations, "iteration")
        if args.max_iterations
        else (args.epoch, "epoch")
    )
    trainer = ktrainer.Trainer(updater, stop, out=args.out)

    trainer.extend(extensions.Evaluator(test_iter, model, device=args.device))
    trainer.extend(
        extensions.ExponentialShift("learning_rate", 0.7), trigger=(2, "epoch")
    )
    trainer.extend(extensions.observe_lr(), trigger=(1, "epoch"))
    frequency = args.epoch if args.frequency == -1 else max(1, args.frequency)
    snapshot = extensions.snapshot(n_retains=2, autoload=args.autoload)
    trainer.extend(snapshot, trigger=(frequency, "epoch"))
    trainer.extend(extensions.LogReport())
    trainer.extend(
        extensions.PlotReport(
            ["main/loss", "validation/main/loss"], "epoch", filename="loss.png"
        )
    )
    trainer.extend(
        extensions.PlotReport(
            ["main/accuracy", "validation/main/accuracy"],
            "epoch",
            filename="accuracy.png",
        )
    )
    trainer.extend(
        extensions.PrintReport(
            [
                "epoch",
                "main/loss",
                "validation/main/loss",
                "main/accuracy",
                "validation/main/accuracy",
                "lr",
                "elapsed_time",
            ]
        )
    )
    if not args.no_progress:
        trainer.extend(extensions.ProgressBar(update_interval=10))

    if args.resume:
        serializers.load_hdf5(args.resume, trainer)
        logger.info(
            "resumed from %s at iteration %d (epoch %d)",
            args.resume,
            updater.iteration,
            updater.epoch,
        )
    trainer.run()
    # The trained weights on their own, for inference: build the same model
    # and `serializers.load_hdf5(path, model)` (see docs/getting-started.md).
    model_path = os.path.join(args.out, "model.h5")
    serializers.save_hdf5(model_path, model)
    logger.info("saved the trained model to %s", model_path)
    return (
        trainer.get_extension("LogReport").log[-1]
        if trainer.get_extension("LogReport").log
        else {}
    )


if __name__ == "__main__":
    setup_logging()
    main()
