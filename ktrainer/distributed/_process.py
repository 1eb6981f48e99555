"""Which process this is: `rank`, `world_size`, `is_chief`."""

from __future__ import annotations

from ktrainer._backend import distribute


def rank() -> int:
    """The index of this process among the processes of the run.

    Counted by the backend's engine: under tensorflow from `TF_CONFIG`
    (its `chief`, then its `worker`s, as `MultiWorkerMirroredStrategy`
    orders them), under jax `jax.process_index()` (after
    `keras.distribution.initialize`), under torch the rank of the
    initialized `torch.distributed` group. Replicas in one process
    (several devices under one strategy) share its rank.

    Returns:
        `0` in a run of one process.
    """
    return distribute.process_rank()


def world_size() -> int:
    """The number of processes of the run (not of devices); `1` for one."""
    return distribute.process_count()


def is_chief() -> bool:
    """Whether this process writes logs, plots and snapshots.

    The chief is rank `0`: TensorFlow's `chief` task (worker 0 without
    one), jax's process 0, torch's rank 0. Always `True` in one process.
    """
    return distribute.is_chief_process()
