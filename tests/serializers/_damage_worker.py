"""Loads damaged copies of a real trainer snapshot; one result line per case.

Run by `test_damage_fuzz.py` in a subprocess, so that a load that never
returns shows up as a missing line within the parent's per-case timeout
instead of hanging the test run. Usage:

    KERAS_BACKEND=jax python tests/serializers/_damage_worker.py DIR SEED N

DIR receives the clean snapshot and the damaged copies. For each case the
worker prints `case <i> <kind> <detail> -> <outcome>` where the outcome is
`error <type>: <first line>`, `identical` or `WRONG ...` (a load that
changed the target into anything but the snapshot's state, or an error
that left the target changed).
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _resume_script import build_trainer

from ktrainer.serializers import DictionarySerializer, load_hdf5, save_hdf5

BLOCK = 4096


def trainer_state(trainer) -> dict[str, np.ndarray]:
    """Everything the trainer's `serialize` reads, as numpy arrays."""
    trainer.updater.sync_model_state()
    state: dict[str, np.ndarray] = {}
    trainer.serialize(DictionarySerializer(state))
    state.pop("_snapshot_elapsed_time", None)
    return state


def same(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a
    )


def cases(size: int, rng: random.Random) -> list[tuple[str, int, int]]:
    """(kind, offset, bit or length) damage cases over a file of `size` bytes."""
    found: list[tuple[str, int, int]] = []
    for _ in range(12):
        found.append(("truncate", rng.randrange(0, size), 0))
    for _ in range(26):
        found.append(("flip", rng.randrange(0, size), rng.randrange(8)))
    for _ in range(8):  # the superblock and the first object headers
        found.append(("flip", rng.randrange(0, min(size, 2048)), rng.randrange(8)))
    for _ in range(12):
        found.append(("zero", rng.randrange(0, max(size // BLOCK, 1)) * BLOCK, BLOCK))
    return found


def damage(clean: bytes, kind: str, offset: int, arg: int) -> bytes:
    data = bytearray(clean)
    if kind == "truncate":
        return bytes(data[:offset])
    if kind == "flip":
        data[offset] ^= 1 << arg
        return bytes(data)
    data[offset : offset + arg] = bytes(len(data[offset : offset + arg]))
    return bytes(data)


def main() -> None:
    directory, seed, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    source = build_trainer(os.path.join(directory, "a"), 5)
    source.run()
    clean_path = os.path.join(directory, "clean.h5")
    save_hdf5(clean_path, source)
    with open(clean_path, "rb") as f:
        clean = f.read()
    target = build_trainer(os.path.join(directory, "b"), 10, seed=7)
    load_hdf5(clean_path, target)
    expected = trainer_state(target)
    target = build_trainer(os.path.join(directory, "c"), 10, seed=7)
    print(f"ready size={len(clean)}", flush=True)
    for i, (kind, offset, arg) in enumerate(cases(len(clean), random.Random(seed))):
        if i >= limit:
            break
        path = os.path.join(directory, f"damaged_{i}.h5")
        with open(path, "wb") as f:
            f.write(damage(clean, kind, offset, arg))
        before = trainer_state(target)
        label = f"case {i} {kind} {offset} {arg} ->"
        print(label, "start", flush=True)
        try:
            load_hdf5(path, target)
        except (ValueError, OSError) as error:
            if same(trainer_state(target), before):
                first = str(error).splitlines()[0][:300]
                print(label, f"error {type(error).__name__}: {first}", flush=True)
            else:
                print(label, "WRONG: an error, but the target changed", flush=True)
        except Exception as error:  # a crash: any other exception
            print(label, f"WRONG: crash {type(error).__name__}: {error}", flush=True)
        else:
            if same(trainer_state(target), expected):
                print(label, "identical", flush=True)
            else:
                print(label, "WRONG: loaded a different state", flush=True)
        os.remove(path)
    print("done", flush=True)


if __name__ == "__main__":
    main()
