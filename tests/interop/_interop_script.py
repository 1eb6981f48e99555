"""One side of the cross-backend snapshot test, run under `KERAS_BACKEND`.

    python tests/interop/_interop_script.py write DIR
        trains `_resume_script`'s run for `N` iterations under this
        backend, snapshots it to DIR/snapshot_<backend> and saves its
        variables to DIR/state_<backend>.npz;
    python tests/interop/_interop_script.py load DIR BACKEND...
        loads each named backend's snapshot into a freshly built run,
        checks the loaded variables against that backend's `.npz`, trains
        `N` more iterations and prints one JSON line per snapshot.

Needs the repository root and `tests/` on `PYTHONPATH`.
"""

from __future__ import annotations

import json
import os
import sys

import keras
import numpy as np
from _resume_script import build_trainer, state_arrays

from ktrainer.serializers import load_hdf5
from ktrainer.training.extensions import snapshot

N = 4
BACKEND = keras.config.backend()


def write(directory: str) -> None:
    trainer = build_trainer(directory, N)
    trainer.extend(snapshot(filename=f"snapshot_{BACKEND}"), trigger=(N, "iteration"))
    trainer.run()
    np.savez(os.path.join(directory, f"state_{BACKEND}.npz"), **state_arrays(trainer))


def load(directory: str, source: str) -> dict:
    losses: list[float] = []
    trainer = build_trainer(directory, 2 * N, losses=losses, seed=7)
    trainer.extend(snapshot(filename="unused"), trigger=(N, "iteration"))
    load_hdf5(os.path.join(directory, f"snapshot_{source}"), trainer)
    loaded = state_arrays(trainer)
    with np.load(os.path.join(directory, f"state_{source}.npz")) as saved:
        mismatched = sorted(
            key
            for key in set(saved.files) | set(loaded)
            if key not in saved.files
            or key not in loaded
            or saved[key].shape != loaded[key].shape
            or not np.array_equal(saved[key].astype(loaded[key].dtype), loaded[key])
        )
        iteration_after_load = trainer.updater.iteration
        trainer.run()
        trained = state_arrays(trainer)
        changed = not np.array_equal(
            trained["model/classifier/hidden/kernel"],
            saved["model/classifier/hidden/kernel"],
        )
    return {
        "source": source,
        "target": BACKEND,
        "mismatched": mismatched,
        "iteration_after_load": iteration_after_load,
        "final_iteration": trainer.updater.iteration,
        "losses": losses,
        "weights_changed": changed,
    }


def main(argv: list[str]) -> None:
    command, directory, *sources = argv
    if command == "write":
        write(directory)
    else:
        for source in sources:
            print("RESULT " + json.dumps(load(directory, source)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
