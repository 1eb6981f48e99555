"""Exact resume: N iterations, a snapshot, a fresh process state, N more.

Training 2N iterations straight and training N, saving, rebuilding every
object, loading and training N more must give bit-identical variables,
optimizer state and per-iteration losses. The run (see `_resume_script`)
has a shuffled iterator, a Dropout layer, Adam and an `ExponentialShift`.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from _resume_script import build_trainer, state_arrays

from ktrainer.serializers import load_hdf5, save_hdf5
from ktrainer.training.extensions import snapshot
from ktrainer.training.extensions.snapshot_writers import ThreadWriter

N = 5  # mid-epoch: 3 iterations per epoch


def _straight(out: str, dropout_seed=1234):
    losses: list[float] = []
    trainer = build_trainer(out, 2 * N, dropout_seed=dropout_seed, losses=losses)
    trainer.run()
    return state_arrays(trainer), losses


def _resume_with_save_hdf5(out: str, dropout_seed):
    losses: list[float] = []
    first = build_trainer(out, N, dropout_seed=dropout_seed, losses=losses)
    first.run()
    path = os.path.join(out, "suspended.h5")
    save_hdf5(path, first)
    # A different seed: anything the snapshot failed to restore would show.
    second = build_trainer(out, 2 * N, dropout_seed=dropout_seed, losses=losses, seed=7)
    load_hdf5(path, second)
    second.run()
    return second, losses


def _resume_with_autoload(out: str, dropout_seed, writer=None):
    losses: list[float] = []
    first = build_trainer(out, N, dropout_seed=dropout_seed, losses=losses)
    first.extend(snapshot(writer=writer), trigger=(N, "iteration"))
    first.run()
    second = build_trainer(out, 2 * N, dropout_seed=dropout_seed, losses=losses, seed=7)
    extension = snapshot(autoload=True)
    second.extend(extension, trigger=(100, "iteration"))
    second.run()
    assert extension.loaded_from == os.path.join(out, f"snapshot_iter_{N}")
    return second, losses


RESUMES = [
    ("save_hdf5", _resume_with_save_hdf5),
    ("snapshot_autoload", _resume_with_autoload),
    (
        "thread_writer_autoload",
        lambda out, seed: _resume_with_autoload(out, seed, ThreadWriter()),
    ),
]


def _assert_same_state(expected: dict, actual: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


@pytest.mark.parametrize(
    "resume", [r for _, r in RESUMES], ids=[name for name, _ in RESUMES]
)
def test_resumed_run_is_bit_identical_to_straight_run(tmp_path, resume):
    expected_state, expected_losses = _straight(str(tmp_path / "straight"))

    trainer, losses = resume(str(tmp_path / "resumed"), 1234)

    assert trainer.updater.iteration == 2 * N
    assert losses == expected_losses
    _assert_same_state(expected_state, state_arrays(trainer))
    optimizer = trainer.updater.get_optimizer()
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 2 * N
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
        0.02 * 0.9 ** (2 * N // 2),
        rtol=1e-6,
    )


def test_straight_run_differs_with_another_seed(tmp_path):
    # Guards the test above: without a load, the other seed changes everything.
    expected_state, expected_losses = _straight(str(tmp_path / "a"))
    losses: list[float] = []
    other = build_trainer(str(tmp_path / "b"), 2 * N, losses=losses, seed=7)
    other.run()
    assert losses != expected_losses
    state = state_arrays(other)
    assert not np.array_equal(
        state["model/classifier/hidden/kernel"],
        expected_state["model/classifier/hidden/kernel"],
    )


def test_unseeded_dropout_resumes_exactly(tmp_path):
    # On torch an unseeded Dropout draws from torch's global generator, whose
    # state the updater saves through `_backend.serialize_rng_state`.
    expected_state, expected_losses = _straight(
        str(tmp_path / "straight"), dropout_seed=None
    )

    trainer, losses = _resume_with_save_hdf5(str(tmp_path / "resumed"), None)

    assert losses == expected_losses
    _assert_same_state(expected_state, state_arrays(trainer))
