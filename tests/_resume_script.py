"""The small training run that the resume tests compare; also a script.

`build_trainer` makes a run with everything whose state a snapshot must
carry for an exact resume: a shuffled iterator, a Dropout layer, Adam's
slots and step count, and an `ExponentialShift` of the learning rate.
Every layer and the model have explicit names, so a fresh process builds
the same variable paths.

As a script (for tests/test_crash_resume.py) it trains with
`snapshot(autoload=True, n_retains=2)`, writes the iteration to a marker
file after each update, and saves the final variables to an `.npz` file;
with `--preempt` a `PreemptionHandler` on SIGTERM writes a snapshot and
exits with status 143:

    KERAS_BACKEND=jax python tests/_resume_script.py --out result \
        --iterations 40 --snapshot-every 5 --marker it.txt --weights w.npz
"""

from __future__ import annotations

import argparse
import os
import time

import keras
import numpy as np

from ktrainer.iterators import SerialIterator
from ktrainer.serializers import DictionarySerializer, save_hdf5, serialize_object
from ktrainer.training import Trainer, make_extension
from ktrainer.training.extensions import (
    ExponentialShift,
    PreemptionHandler,
    snapshot,
    snapshot_writers,
)
from ktrainer.training.updaters import StandardUpdater

N_EXAMPLES = 48  # 3 iterations per epoch at batch size 16


def make_dataset(n: int = N_EXAMPLES, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    w = rng.normal(size=(8, 3)).astype("float32")
    y = np.argmax(x @ w, axis=1).astype("int32")
    return list(zip(x, y))


def make_model(dropout_seed: int | None = 1234) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((8,), name="x"),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dropout(0.3, seed=dropout_seed, name="dropout"),
            keras.layers.Dense(3, name="logits"),
        ],
        name="classifier",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def build_trainer(
    out: str,
    stop: int,
    *,
    dropout_seed: int | None = 1234,
    losses: list | None = None,
    seed: int = 0,
) -> Trainer:
    """A fresh trainer that stops after `stop` iterations.

    `losses`, when given, receives each iteration's `'main/loss'`.
    """
    keras.utils.set_random_seed(seed)
    model = make_model(dropout_seed)
    iterator = SerialIterator(make_dataset(), 16, shuffle=True)
    trainer = Trainer(StandardUpdater(iterator, model), (stop, "iteration"), out=out)
    trainer.extend(ExponentialShift("learning_rate", 0.9), trigger=(2, "iteration"))
    if losses is not None:

        @make_extension(trigger=(1, "iteration"), needs_model_state=False)
        def record_loss(trainer):
            losses.append(
                float(keras.ops.convert_to_numpy(trainer.observation["main/loss"]))
            )

        trainer.extend(record_loss)
    return trainer


def state_arrays(trainer) -> dict[str, np.ndarray]:
    """The model's and optimizer's variables as numpy arrays, by snapshot key."""
    updater = trainer.updater
    updater.sync_model_state()
    arrays: dict[str, np.ndarray] = {}
    serializer = DictionarySerializer(arrays)
    serialize_object(updater.get_model(), serializer["model"])
    serialize_object(updater.get_optimizer(), serializer["optimizer"])
    return arrays


def _marker_extension(marker: str, delay: float):
    @make_extension(trigger=(1, "iteration"), priority=-200, needs_model_state=False)
    def write_marker(trainer):
        # Written after the snapshot (priority -100) of the same iteration.
        temp = marker + ".tmp"
        with open(temp, "w") as f:
            f.write(str(trainer.updater.iteration))
        os.replace(temp, marker)
        if delay:
            time.sleep(delay)

    return write_marker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--snapshot-every", type=int, required=True)
    parser.add_argument("--marker", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--preempt", action="store_true")
    parser.add_argument("--save-delay", type=float, default=0.0)
    args = parser.parse_args(argv)

    trainer = build_trainer(args.out, args.iterations)
    writer = None
    if args.save_delay:
        # Each snapshot's temporary file stays for a while before its rename,
        # so that a kill can land in the middle of a write.
        def slow_save(path, target):
            save_hdf5(path, target)
            time.sleep(args.save_delay)

        writer = snapshot_writers.SimpleWriter(slow_save)
    snapshotter = snapshot(autoload=True, n_retains=2, writer=writer)
    trainer.extend(snapshotter, trigger=(args.snapshot_every, "iteration"))
    trainer.extend(_marker_extension(args.marker, args.delay))
    if args.preempt:
        trainer.extend(PreemptionHandler(snapshotter))
    trainer.run()
    print(f"resumed_from={snapshotter.loaded_from}", flush=True)
    np.savez(args.weights, **state_arrays(trainer))


if __name__ == "__main__":
    main()
