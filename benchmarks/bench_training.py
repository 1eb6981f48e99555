"""Steady-state training speed of ktrainer's Trainer against `model.fit`.

Trains the same model on the same data with `model.fit(verbose=0)` and with
`Trainer` + `StandardUpdater` (+ LogReport, PrintReport at (1, 'epoch') and
a ProgressBar, writing to a null stream), and prints steps/s of each and
their ratio. The first epoch of each is a warm-up (compilation) and is not
timed. Each backend runs in its own process.

    python benchmarks/bench_training.py                 # all backends
    python benchmarks/bench_training.py --backend jax --workload small
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time

WORKLOADS = {
    # name: (hidden width, batch size, train samples)
    "small": (256, 64, 64 * 150),
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


def bench_fit(width, batch, n, epochs) -> float:
    import keras

    keras.utils.set_random_seed(0)
    x, y = _data(n)
    model = _build_model(width)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # warm-up
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    elapsed = time.perf_counter() - start
    return epochs * (n // batch) / elapsed


def bench_trainer(width, batch, n, epochs) -> float:
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
    marks = {}

    def mark(trainer):
        # Wait for the step to finish so the clock measures finished work.
        keras.ops.convert_to_numpy(trainer.observation["main/loss"])
        marks.setdefault("warm", (time.perf_counter(), updater.iteration))
        marks["end"] = (time.perf_counter(), updater.iteration)

    mark.needs_model_state = False
    trainer.extend(mark, trigger=(1, "epoch"), priority=1000)
    trainer.run()
    (t0, i0), (t1, i1) = marks["warm"], marks["end"]
    return (i1 - i0) / (t1 - t0)


def run_backend(workloads, epochs) -> list[dict]:
    import keras

    rows = []
    for name in workloads:
        width, batch, n = WORKLOADS[name]
        fit = bench_fit(width, batch, n, epochs)
        trainer = bench_trainer(width, batch, n, epochs)
        rows.append(
            {
                "backend": keras.config.backend(),
                "workload": f"{name} (784-{width}-{width}-10, batch {batch})",
                "fit_steps_per_s": round(fit, 1),
                "trainer_steps_per_s": round(trainer, 1),
                "ratio": round(trainer / fit, 3),
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
        "--epochs", type=int, default=3, help="timed epochs after the warm-up epoch"
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
        rows = run_backend(workloads, args.epochs)
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
