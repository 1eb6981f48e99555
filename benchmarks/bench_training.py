"""Steady-state training speed of ktrainer's Trainer against `model.fit`.

Trains the same model on the same data with `model.fit(verbose=0)` and with
`Trainer` + `StandardUpdater` (+ LogReport, PrintReport at (1, 'epoch') and
a ProgressBar, writing to a null stream), and prints steps/s of each and
their ratio. Both are timed the same way: a mark at the end of every
epoch waits for the epoch's last loss; the first epoch (compilation) is a
warm-up; each later epoch gives one steps/s figure. Each loop runs
`--repeat` times, fit and Trainer interleaved so that a drift in the
machine's speed hits both; the table shows the median over all epochs.
Each backend runs in its own process.

    python benchmarks/bench_training.py                 # all backends
    python benchmarks/bench_training.py --backend jax --workload small
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import subprocess
import sys
import time

WORKLOADS = {
    # name: (hidden width, batch size, train samples)
    "small": (256, 64, 64 * 300),
    "large": (2048, 256, 256 * 30),
}


def _build_model(width: int):
    import keras

    model = keras.Sequential(
        [
            keras.Input((784,), name="x"),
            keras.layers.Dense(width, activation="relu", name="fc1"),
            keras.layers.Dense(width, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="out"),
        ],
        name="mlp",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _data(n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 784)).astype("float32")
    y = rng.integers(0, 10, size=(n,)).astype("int32")
    return x, y


def _epoch_rates(marks: list[float], steps: int) -> list[float]:
    # marks[0] ends the warm-up epoch (compilation); later gaps are timed.
    return [steps / (b - a) for a, b in itertools.pairwise(marks)]


def bench_fit(width, batch, n, epochs) -> list[float]:
    """Steps/s of each epoch of `model.fit(verbose=0)` after the first."""
    import keras

    keras.utils.set_random_seed(0)
    x, y = _data(n)
    model = _build_model(width)
    marks = []

    class Mark(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            float(logs["loss"])  # wait until the epoch's work is done
            marks.append(time.perf_counter())

    model.fit(x, y, batch_size=batch, epochs=epochs + 1, verbose=0, callbacks=[Mark()])
    return _epoch_rates(marks, n // batch)


def bench_trainer(width, batch, n, epochs) -> list[float]:
    """Steps/s of each epoch of the Trainer after the first."""
    import keras

    import ktrainer
    from ktrainer.dataset import TupleDataset
    from ktrainer.iterators import SerialIterator
    from ktrainer.training import extensions

    keras.utils.set_random_seed(0)
    x, y = _data(n)
    model = _build_model(width)
    iterator = SerialIterator(TupleDataset(x, y), batch, shuffle=True)
    updater = ktrainer.StandardUpdater(iterator, model)
    trainer = ktrainer.Trainer(updater, (epochs + 1, "epoch"))
    sink = io.StringIO()
    trainer.extend(extensions.LogReport(filename=None))
    trainer.extend(
        extensions.PrintReport(["epoch", "main/loss", "main/accuracy"], out=sink)
    )
    trainer.extend(extensions.ProgressBar(out=sink))
    marks = []

    def mark(trainer):
        # Wait until the epoch's work is done, as the fit callback does.
        float(keras.ops.convert_to_numpy(trainer.observation["main/loss"]))
        marks.append(time.perf_counter())

    mark.needs_model_state = False
    trainer.extend(mark, trigger=(1, "epoch"), priority=1000)
    trainer.run()
    return _epoch_rates(marks, n // batch)


def run_backend(workloads, epochs, repeat) -> list[dict]:
    import statistics

    import keras

    rows = []
    for name in workloads:
        width, batch, n = WORKLOADS[name]
        fit, trainer = [], []
        for _ in range(repeat):  # interleaved, so drifts hit both alike
            fit += bench_fit(width, batch, n, epochs)
            trainer += bench_trainer(width, batch, n, epochs)
        fit_rate = statistics.median(fit)
        trainer_rate = statistics.median(trainer)
        rows.append(
            {
                "backend": keras.config.backend(),
                "workload": f"{name} (784-{width}-{width}-10, batch {batch})",
                "fit_steps_per_s": round(fit_rate, 1),
                "trainer_steps_per_s": round(trainer_rate, 1),
                "ratio": round(trainer_rate / fit_rate, 3),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", choices=["tensorflow", "jax", "torch", "all"], default="all"
    )
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument(
        "--epochs", type=int, default=5, help="timed epochs after the warm-up epoch"
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="interleaved runs of each loop"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print rows as JSON (used between processes)",
    )
    args = parser.parse_args()
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]

    if args.backend == "all":
        rows = []
        for backend in ("tensorflow", "jax", "torch"):
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--backend",
                    backend,
                    "--workload",
                    args.workload,
                    "--epochs",
                    str(args.epochs),
                    "--repeat",
                    str(args.repeat),
                    "--json",
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rows.extend(json.loads(out.strip().splitlines()[-1]))
    else:
        os.environ["KERAS_BACKEND"] = args.backend
        rows = run_backend(workloads, args.epochs, args.repeat)
        if args.json:
            print(json.dumps(rows))
            return
    print("| backend | workload | fit steps/s | Trainer steps/s | Trainer / fit |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['workload']} | {r['fit_steps_per_s']} | "
            f"{r['trainer_steps_per_s']} | {r['ratio']:.2f}x |"
        )


if __name__ == "__main__":
    main()
