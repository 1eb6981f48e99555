"""Snapshot speed: ktrainer's trainer snapshot against raw h5py and Keras.

The compute-bound MLP of `bench_training.py` (784-2048-2048-10, Adam with
its slots filled by one step, ~5.8M parameters, 67 MiB of state) is
saved, each way repeated and the median reported:

- `snapshot`: the `snapshot()` extension called on the trainer (the
  default `SimpleWriter`: `save_hdf5`, written to a temporary file, synced
  and renamed; the kernel is asked to start writing back each large
  array while the next ones are serialized, so the final sync waits for
  less than a raw write's does);
- `save_hdf5`: `save_hdf5(path, trainer)` itself;
- `raw h5py`: the same arrays, already in numpy, written by a bare loop of
  `create_dataset` (without and with an fsync, the durability a snapshot
  has);
- `model.save_weights`: Keras's own HDF5 weights file (model only, no
  optimizer or iterator state);
- `save_hdf5, fsync off`: a diagnostic, `save_hdf5` with its fsyncs and
  its early writeback turned off, to set the serializer's own cost
  against raw h5py's (this is "an unsynced save");
- `save_hdf5, fsync off, no digests`: the same with the per-entry
  checksums' digest turned off (and `save_hdf5, no digests`, synced),
  and `checksums`: the digests of every entry alone, one after another
  (what a load verifies). A save digests large arrays in a thread while
  it writes them, so what the checksums cost a save is the difference
  between the unsynced saves with and without digests, printed as a
  share of the one without;
- `ThreadWriter`: the stall, the time the training loop is blocked (the
  host copy of the state and the start of the thread), and the full time
  until the file is on disk. `host copy` times the copy alone.

Each backend runs in its own process. Then, without a backend, the cost
of one `LogReport` write is timed for logs of 100, 1,000 and 10,000
entries: the in-place append it does now against rewriting the whole JSON
list (what it did before, and what a `filename` with fields still does).

    python benchmarks/bench_snapshot.py                # all backends
    python benchmarks/bench_snapshot.py --backend jax --repeat 7
    python benchmarks/bench_snapshot.py --backend none  # LogReport only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

WIDTH, BATCH = 2048, 256


def _build_trainer(out: str):
    import keras
    import numpy as np

    import ktrainer
    from ktrainer.dataset import TupleDataset
    from ktrainer.iterators import SerialIterator

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,), name="x"),
            keras.layers.Dense(WIDTH, activation="relu", name="fc1"),
            keras.layers.Dense(WIDTH, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="out"),
        ],
        name="mlp",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * 4, 784)).astype("float32")
    y = rng.integers(0, 10, size=(BATCH * 4,)).astype("int32")
    iterator = SerialIterator(TupleDataset(x, y), BATCH, shuffle=True)
    trainer = ktrainer.Trainer(
        ktrainer.StandardUpdater(iterator, model), (1, "iteration"), out=out
    )
    trainer.run()  # one Adam step: the slots hold real values
    return trainer


def _median_times(fns: dict, repeat: int, directory: str) -> dict[str, float]:
    """Median seconds of each `fn(path)`, each call writing a new file.

    The functions take turns, round after round and in a rotating order,
    so that the noise of a shared disk spreads over all of them alike; the
    first round is a warm-up. Snapshots in a run have new names (`snapshot_iter_<n>`), so
    no timed call pays for replacing or truncating an earlier file; files
    are removed between calls, untimed.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for index in range(repeat + 1):
        # Each round starts one function later, so none always comes first
        # (after the removals) or right after the slowest one.
        shift = index % len(order)
        for name in order[shift:] + order[:shift]:
            fn = fns[name]
            path = os.path.join(directory, f"file_{index}")
            start = time.perf_counter()
            fn(path)
            elapsed = time.perf_counter() - start
            if index:
                times[name].append(elapsed)
            for leftover in os.listdir(directory):
                os.remove(os.path.join(directory, leftover))
    return {name: statistics.median(values) for name, values in times.items()}


@contextlib.contextmanager
def _without_fsync():
    """Diagnostic only: turns off the serializers' fsyncs and early writeback.

    What is left is a save with no durability at all: the data stays in
    the page cache, as with `raw h5py`.
    """
    from ktrainer.serializers import _atomic

    saved = _atomic._fsync_file, _atomic._fsync_directory
    saved_threshold = _atomic.EarlyWriteback.THRESHOLD
    _atomic._fsync_file = _atomic._fsync_directory = lambda path: None
    _atomic.EarlyWriteback.THRESHOLD = float("inf")
    try:
        yield
    finally:
        _atomic._fsync_file, _atomic._fsync_directory = saved
        _atomic.EarlyWriteback.THRESHOLD = saved_threshold


@contextlib.contextmanager
def _without_digests():
    """Diagnostic only: every entry's checksum digest becomes 0."""
    from ktrainer.serializers import _checksum

    saved = _checksum.digest
    _checksum.digest = lambda stored: 0
    try:
        yield
    finally:
        _checksum.digest = saved


def _raw_h5py(path: str, arrays: dict, fsync: bool) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    if fsync:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def run_backend(repeat: int, directory: str) -> dict:
    import keras

    from ktrainer.serializers import DictionarySerializer, save_hdf5
    from ktrainer.training.extensions import snapshot, snapshot_writers

    out = os.path.join(directory, keras.config.backend())
    os.makedirs(out, exist_ok=True)
    # The snapshot extension writes into trainer.out: the folder whose files
    # are removed after each timed call, as for every other row.
    trainer = _build_trainer(out)
    model = trainer.updater.get_model()
    arrays: dict = {}
    DictionarySerializer(arrays).save(trainer)
    # Strings and None markers aside, the same numeric entries.
    arrays = {k: v for k, v in arrays.items() if v.dtype.kind in "biuf"}
    nbytes = sum(v.nbytes for v in arrays.values())

    current = {}
    extension = snapshot(filename=lambda trainer: current["name"])
    writer = snapshot_writers.ThreadWriter()
    stalls: list[float] = []

    def snapshot_call(path):
        current["name"] = os.path.basename(path)
        extension(trainer)

    def thread_write(path):
        start = time.perf_counter()
        writer(os.path.basename(path), out, trainer)
        stalls.append(time.perf_counter() - start)
        writer.finalize()

    def host_copy(path):
        snapshot_writers._HostCopy(trainer)

    def save_without_fsync(path):
        with _without_fsync():
            save_hdf5(path, trainer)

    def save_without_digests(path):
        with _without_digests():
            save_hdf5(path, trainer)

    def save_without_fsync_or_digests(path):
        with _without_fsync(), _without_digests():
            save_hdf5(path, trainer)

    from ktrainer.serializers._checksum import digest

    def checksums(path):
        for value in arrays.values():
            digest(value)

    timings = _median_times(
        {
            "snapshot": snapshot_call,
            "save_hdf5": lambda path: save_hdf5(path, trainer),
            "save_hdf5, no digests": save_without_digests,
            "save_hdf5, fsync off": save_without_fsync,
            "save_hdf5, fsync off, no digests": save_without_fsync_or_digests,
            "checksums": checksums,
            "raw h5py": lambda path: _raw_h5py(path, arrays, False),
            "raw h5py + fsync": lambda path: _raw_h5py(path, arrays, True),
            "model.save_weights": lambda path: model.save_weights(path + ".weights.h5"),
            "host copy": host_copy,
            "ThreadWriter full": thread_write,
        },
        repeat,
        out,
    )
    timings["ThreadWriter stall"] = statistics.median(stalls[1:])
    return {
        "backend": keras.config.backend(),
        "mbytes": round(nbytes / 2**20, 1),
        "ms": {k: round(v * 1000, 1) for k, v in timings.items()},
    }


def _print_table(rows: list[dict]) -> None:
    for row in rows:
        ms = row["ms"]
        raw, raw_sync = ms["raw h5py"], ms["raw h5py + fsync"]
        print(f"\n{row['backend']}: {row['mbytes']} MB of numeric state")
        print("| what | ms | / raw h5py | / raw h5py + fsync |")
        print("|---|---|---|---|")
        for name, value in ms.items():
            print(
                f"| {name} | {value} | {value / raw:.2f}x | {value / raw_sync:.2f}x |"
            )
        stall, copy = ms["ThreadWriter stall"], ms["host copy"]
        print(
            f"ThreadWriter stall / host copy: {stall / copy:.2f}x; "
            f"stall / full write: {stall / ms['ThreadWriter full']:.2f}x"
        )
        unsynced = ms["save_hdf5, fsync off"]
        bare = ms["save_hdf5, fsync off, no digests"]
        print(
            f"checksums' cost in an unsynced save: {(unsynced - bare) / bare:.1%} "
            f"(the digests alone, not overlapped: {ms['checksums'] / bare:.1%}); "
            f"snapshot / raw h5py + fsync: {ms['snapshot'] / raw_sync:.2f}x "
            f"(without digests: {ms['save_hdf5, no digests'] / raw_sync:.2f}x)"
        )


def _log_entry(index: int) -> dict:
    # What a LogReport entry with a loss, an accuracy and validation holds.
    return {
        "main/loss": 0.1 + 1 / (index + 1),
        "main/accuracy": 0.9,
        "validation/main/loss": 0.2,
        "validation/main/accuracy": 0.85,
        "epoch": index // 10,
        "iteration": index * 100,
        "elapsed_time": index * 1.5,
    }


def bench_log_report(directory: str, repeat: int) -> list[tuple[int, float, float]]:
    """(entries, ms per append, ms per full rewrite) for growing logs."""
    import json as json_module

    from ktrainer.training.extensions import _util
    from ktrainer.training.extensions.log_report import _AppendedJSONList

    rows = []
    for n in (100, 1_000, 10_000):
        path = os.path.join(directory, f"log_{n}")
        log = [_log_entry(i) for i in range(n)]
        writer = _AppendedJSONList()
        writer.write(path, log)  # the first, full write
        appends, rewrites = [], []
        for i in range(repeat):
            log.append(_log_entry(n + i))
            start = time.perf_counter()
            writer.write(path, log)
            appends.append(time.perf_counter() - start)
            start = time.perf_counter()
            _util.write_text_atomically(
                path + ".full", json_module.dumps(log, indent=4)
            )
            rewrites.append(time.perf_counter() - start)
        with open(path) as f:
            assert json_module.load(f) == log
        rows.append(
            (n, statistics.median(appends) * 1e3, statistics.median(rewrites) * 1e3)
        )
    return rows


def _print_log_table(rows) -> None:
    print("\nLogReport: one write to a log of n entries (ms, median)")
    print("| entries | append in place | full rewrite (before) |")
    print("|---|---|---|")
    for n, append, rewrite in rows:
        print(f"| {n} | {append:.3f} | {rewrite:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        choices=["tensorflow", "jax", "torch", "all", "none"],
        default="all",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions")
    parser.add_argument(
        "--dir", default=None, help="where to write (default: a temporary folder)"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    directory = args.dir or tempfile.mkdtemp(prefix="bench_snapshot_")

    try:
        if args.backend == "none":
            _print_log_table(bench_log_report(directory, max(args.repeat, 5)))
            return
        if args.backend == "all":
            rows = []
            for backend in ("tensorflow", "jax", "torch"):
                env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
                command = [
                    sys.executable, __file__, "--backend", backend,
                    "--repeat", str(args.repeat), "--dir", directory, "--json",
                ]  # fmt: skip
                out = subprocess.run(
                    command, env=env, check=True, capture_output=True, text=True
                ).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
            _print_table(rows)
            _print_log_table(bench_log_report(directory, max(args.repeat, 5)))
            return
        else:
            os.environ["KERAS_BACKEND"] = args.backend
            rows = [run_backend(args.repeat, directory)]
            if args.json:
                print(json.dumps(rows[0]))
                return
        _print_table(rows)
    finally:
        if args.dir is None and not args.json:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
