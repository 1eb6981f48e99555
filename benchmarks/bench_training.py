"""Steady-state training speed of ktrainer's Trainer against `model.fit`.

Trains the same model on the same data with `model.fit(verbose=0)`, with
the tightest hand-written loop of the backend (`_tight_loops.py`) and with
`Trainer` + `StandardUpdater` under three extension sets (`EXTENSION_SETS`:
"reporting", "typical", "stress"), plus `fit(steps_per_execution=32)` and
the reporting Trainer with `max_fused_steps=64`, and prints steps/s of each, its ratio
to fit with the spread of that ratio over the rounds, and its ratio to
the tight loop. Both are timed the same way: a mark at the end of every
epoch waits for the epoch's last loss; the first epoch (compilation) is a
warm-up; each later epoch gives one steps/s figure. Each loop runs
`--repeat` times, fit and Trainer interleaved so that a drift in the
machine's speed hits both; the table shows the median over all epochs.
Each backend runs in its own process.

    python benchmarks/bench_training.py                 # all backends
    python benchmarks/bench_training.py --backend jax --workload tiny
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
    # name: (input width, hidden widths, batch size, train samples)
    "tiny": (64, (64,), 32, 32 * 500),
    "small": (784, (256, 256), 64, 64 * 300),
    "large": (784, (2048, 2048), 256, 256 * 30),
}

EXTENSION_SETS = ("reporting", "typical", "stress")
"""What the Trainer runs with:

- reporting: LogReport, PrintReport (at `(1, 'epoch')`) and a ProgressBar;
- typical: those plus `observe_lr()` and `FailOnNonNumber()` at their
  default triggers, as Chainer's examples add them;
- stress: reporting plus a plain function every iteration that reads one
  weight and sets the learning rate (a worst case for state syncs).
"""


def _build_model(n_in: int, widths: tuple, steps_per_execution: int = 1):
    import keras

    model = keras.Sequential(
        [
            keras.Input((n_in,), name="x"),
            *(
                keras.layers.Dense(width, activation="relu", name=f"fc{i + 1}")
                for i, width in enumerate(widths)
            ),
            keras.layers.Dense(10, name="out"),
        ],
        name="mlp",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model


def _data(n: int, n_in: int):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, n_in)).astype("float32")
    y = rng.integers(0, 10, size=(n,)).astype("int32")
    return x, y


def _epoch_rates(marks: list[float], steps: int) -> list[float]:
    # marks[0] ends the warm-up epoch (compilation); later gaps are timed.
    return [steps / (b - a) for a, b in itertools.pairwise(marks)]


def bench_fit(n_in, width, batch, n, epochs, steps_per_execution=1) -> list[float]:
    """Steps/s of each epoch of `model.fit(verbose=0)` after the first."""
    import keras

    keras.utils.set_random_seed(0)
    x, y = _data(n, n_in)
    model = _build_model(n_in, width, steps_per_execution)
    marks = []

    class Mark(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            float(logs["loss"])  # wait until the epoch's work is done
            marks.append(time.perf_counter())

    model.fit(x, y, batch_size=batch, epochs=epochs + 1, verbose=0, callbacks=[Mark()])
    return _epoch_rates(marks, n // batch)


def bench_tight(n_in, width, batch, n, epochs, stress=False) -> list[float]:
    """Steps/s of each epoch of the tightest hand-written loop after the first.

    With `stress`, the loop also does the stress extension's work itself.
    """
    import keras

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _tight_loops

    keras.utils.set_random_seed(0)
    x, y = _data(n, n_in)
    model = _build_model(n_in, width)
    marks = _tight_loops.run(model, x, y, batch, epochs + 1, stress=stress)
    return _epoch_rates(marks, n // batch)


def _add_extensions(trainer, extension_set: str) -> None:
    import keras

    from ktrainer.training import extensions

    sink = io.StringIO()
    trainer.extend(extensions.LogReport(filename=None))
    trainer.extend(
        extensions.PrintReport(["epoch", "main/loss", "main/accuracy"], out=sink)
    )
    trainer.extend(extensions.ProgressBar(out=sink))
    if extension_set == "typical":
        trainer.extend(extensions.observe_lr())
        trainer.extend(extensions.FailOnNonNumber())
    elif extension_set == "stress":
        model = trainer.updater.get_model()
        optimizer = trainer.updater.get_optimizer()

        def read_and_set(trainer):  # a plain function: model_state read_write
            trainer.observation["w00"] = keras.ops.copy(model.weights[0].value[0, 0])
            optimizer.learning_rate.assign(1e-3)

        trainer.extend(read_and_set)


def bench_trainer(
    n_in, width, batch, n, epochs, extension_set, max_fused_steps=1
) -> list[float]:
    """Steps/s of each epoch of the Trainer after the first."""
    import keras

    import ktrainer
    from ktrainer.dataset import TupleDataset
    from ktrainer.iterators import SerialIterator

    keras.utils.set_random_seed(0)
    x, y = _data(n, n_in)
    model = _build_model(n_in, width)
    iterator = SerialIterator(TupleDataset(x, y), batch, shuffle=True)
    updater = ktrainer.StandardUpdater(iterator, model)
    trainer = ktrainer.Trainer(
        updater, (epochs + 1, "epoch"), max_fused_steps=max_fused_steps
    )
    _add_extensions(trainer, extension_set)
    marks = []

    def mark(trainer):
        # Wait until the epoch's work is done, as the fit callback does.
        float(keras.ops.convert_to_numpy(trainer.observation["main/loss"]))
        marks.append(time.perf_counter())

    mark.model_state = "none"
    # Last in each epoch: a timed epoch includes one run of every epoch-end
    # extension, and the warm-up epoch their first (compiling) run.
    trainer.extend(mark, trigger=(1, "epoch"), priority=-1000)
    trainer.run()
    return _epoch_rates(marks, n // batch)


def _spread(rates: list[float], reference: list[float]) -> str:
    """The ratio's spread: ratios of the per-round medians, min-max."""
    import statistics

    ratios = [
        statistics.median(r) / statistics.median(f) for r, f in zip(rates, reference)
    ]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def run_backend(workloads, epochs, repeat) -> list[dict]:
    import statistics

    import keras

    rows = []
    loops = {
        "fit": bench_fit,
        "tight": bench_tight,
        "tight + stress work": lambda *args: bench_tight(*args, stress=True),
    }
    if keras.config.backend() != "torch":  # torch's fit takes only 1
        loops["fit steps_per_execution=32"] = lambda *args: bench_fit(
            *args, steps_per_execution=32
        )
    loops.update(
        {
            f"trainer {name}": (
                lambda *args, name=name: bench_trainer(*args, extension_set=name)
            )
            for name in EXTENSION_SETS
        }
    )
    loops["trainer reporting, max_fused_steps=64"] = lambda *args: bench_trainer(
        *args, extension_set="reporting", max_fused_steps=64
    )
    for name in workloads:
        n_in, width, batch, n = WORKLOADS[name]
        shape = "-".join(str(d) for d in (n_in, *width, 10))
        rounds = {loop: [] for loop in loops}
        for _ in range(repeat):  # interleaved, so drifts hit every loop alike
            for loop, bench in loops.items():
                rounds[loop].append(bench(n_in, width, batch, n, epochs))
        median = {
            loop: statistics.median([r for rs in rates for r in rs])
            for loop, rates in rounds.items()
        }
        for loop in loops:
            if loop == "fit":
                continue
            rows.append(
                {
                    "backend": keras.config.backend(),
                    "workload": f"{name} ({shape}, batch {batch})",
                    "loop": loop,
                    "fit_steps_per_s": round(median["fit"], 1),
                    "steps_per_s": round(median[loop], 1),
                    "ratio": round(median[loop] / median["fit"], 3),
                    "spread": _spread(rounds[loop], rounds["fit"]),
                    "per_tight": round(median[loop] / median["tight"], 3),
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
    print(
        "| backend | workload | loop | fit steps/s | steps/s | / fit "
        "| per-round spread | / tight loop |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['workload']} | {r['loop']} | "
            f"{r['fit_steps_per_s']} | {r['steps_per_s']} | {r['ratio']:.2f}x | "
            f"{r['spread']} | {r['per_tight']:.2f} |"
        )


if __name__ == "__main__":
    main()
