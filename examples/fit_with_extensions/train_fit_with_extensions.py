"""Train with `model.fit` and ktrainer extensions through `ExtensionsCallback`.

Keeps Keras's own loop and adds ktrainer's logging and schedules to it:
`LogReport`, `PrintReport`, `ExponentialShift` and `observe_lr` run
inside `fit` with their usual triggers, and see the Trainer's keys
(`main/loss`, `validation/main/loss`, ...). Runs on scikit-learn's
bundled 8x8 digits under whichever `KERAS_BACKEND` is set.

    KERAS_BACKEND=jax python examples/fit_with_extensions/train_fit_with_extensions.py
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

from ktrainer.callbacks import ExtensionsCallback
from ktrainer.training import extensions


def load_digits_split():
    """Returns `(x_train, y_train), (x_test, y_test)` of sklearn's digits."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    y = y.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1500], y[:1500]), (x[1500:], y[1500:])


def build_model(n_in: int, n_units: int, lr: float) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((n_in,), name="x"),
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--batchsize", "-b", type=int, default=64, help="examples per batch"
    )
    parser.add_argument("--epoch", "-e", type=int, default=10, help="epochs to train")
    parser.add_argument("--out", "-o", default="result", help="output folder")
    parser.add_argument(
        "--unit", "-u", type=int, default=128, help="units per hidden layer"
    )
    parser.add_argument("--lr", type=float, default=0.05, help="initial learning rate")
    parser.add_argument(
        "--max-iterations",
        type=int,
        default=None,
        help="stop after this many iterations (smoke runs)",
    )
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    (x_train, y_train), (x_test, y_test) = load_digits_split()
    model = build_model(x_train.shape[1], args.unit, args.lr)

    stop = (args.max_iterations, "iteration") if args.max_iterations else None
    callback = ExtensionsCallback(out=args.out, stop_trigger=stop)
    callback.extend(
        extensions.ExponentialShift("learning_rate", 0.7), trigger=(2, "epoch")
    )
    callback.extend(extensions.observe_lr(), trigger=(1, "epoch"))
    callback.extend(extensions.LogReport())
    callback.extend(
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

    model.fit(
        x_train,
        y_train,
        batch_size=args.batchsize,
        epochs=args.epoch,
        validation_data=(x_test, y_test),
        verbose=0,
        callbacks=[callback],
    )
    log = callback.get_extension("LogReport").log
    return log[-1] if log else {}


if __name__ == "__main__":
    main()
