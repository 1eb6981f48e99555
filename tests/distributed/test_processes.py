"""`rank`, `world_size`, `is_chief` and `scatter_dataset` in one process."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ktrainer import distributed
from ktrainer._backend import distribute
from ktrainer.dataset import TupleDataset
from ktrainer.distributed._scatter import shard_indices
from ktrainer.iterators import SerialIterator


def test_one_process():
    assert distributed.rank() == 0
    assert distributed.world_size() == 1
    assert distributed.is_chief() is True


def _tf_config(kinds: dict, task: tuple) -> str:
    cluster = {
        kind: [f"127.0.0.1:{20000 + i}" for i in range(count)]
        for kind, count in kinds.items()
    }
    return json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]}})


TF_CONFIGS = [
    ({"worker": 2}, ("worker", 0), 0, 2, True),
    ({"worker": 2}, ("worker", 1), 1, 2, False),
    ({"chief": 1, "worker": 2}, ("chief", 0), 0, 3, True),
    ({"chief": 1, "worker": 2}, ("worker", 0), 1, 3, False),
]


@pytest.mark.backend("tensorflow")
@pytest.mark.parametrize(
    ("kinds", "task", "rank", "size", "chief"),
    TF_CONFIGS,
    ids=["w0", "w1", "chief", "w0-with-chief"],
)
def test_tensorflow_counts_tf_config(monkeypatch, kinds, task, rank, size, chief):
    # What MultiWorkerMirroredStrategy reads: the chief first, then workers.
    monkeypatch.setenv("TF_CONFIG", _tf_config(kinds, task))
    assert (distributed.rank(), distributed.world_size()) == (rank, size)
    assert distributed.is_chief() is chief


SHARES = [(10, 3), (9, 3), (7, 2), (4, 4), (64, 2), (5, 1)]


@pytest.mark.parametrize(("n", "size"), SHARES, ids=[f"{n}/{s}" for n, s in SHARES])
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_shares_are_equal_and_cover_the_dataset(n, size, shuffle):
    shares = [shard_indices(n, i, size, shuffle=shuffle, seed=3) for i in range(size)]
    assert {len(s) for s in shares} == {-(-n // size)}
    assert set(np.concatenate(shares)) == set(range(n))
    if n % size == 0:  # then no example is repeated
        assert len(np.concatenate(shares)) == n
    again = [shard_indices(n, i, size, shuffle=shuffle, seed=3) for i in range(size)]
    for a, b in zip(shares, again):
        np.testing.assert_array_equal(a, b)


def test_too_small_a_dataset_is_refused():
    with pytest.raises(ValueError, match=r"at least one example per process"):
        shard_indices(1, 0, 2)


def _fake_processes(monkeypatch, rank: int, size: int) -> None:
    # Counting processes is the engine's job (tested in the multi-process
    # tests); here only the split is under test.
    monkeypatch.setattr(distribute, "process_rank", lambda: rank)
    monkeypatch.setattr(distribute, "process_count", lambda: size)


DATASETS = {
    "array": lambda x, y: x,
    "tuple-numpy": TupleDataset,
    "list": lambda x, y: list(zip(x, y)),
}


@pytest.mark.parametrize("kind", list(DATASETS))
def test_scatter_gives_each_process_its_share(monkeypatch, kind):
    x = np.arange(10, dtype="float32").reshape(5, 2)
    y = np.arange(5)
    dataset = DATASETS[kind](x, y)
    assert distributed.scatter_dataset(dataset) is dataset
    seen = []
    for rank in range(2):
        _fake_processes(monkeypatch, rank, 2)
        share = distributed.scatter_dataset(dataset, shuffle=True, seed=1)
        assert len(share) == 3
        expected = shard_indices(5, rank, 2, shuffle=True, seed=1)
        for i, j in enumerate(expected):
            got = share[i][0] if kind != "array" else share[i]
            np.testing.assert_array_equal(got, x[j])
        if kind == "tuple-numpy":
            assert isinstance(share, TupleDataset)
        batch = next(SerialIterator(share, 3, shuffle=False))
        assert len(batch) == 3
        seen.extend(expected)
    assert set(seen) == set(range(5))


def test_shuffle_across_processes_needs_a_seed(monkeypatch):
    _fake_processes(monkeypatch, 0, 2)
    with pytest.raises(ValueError, match=r"seed must be given.*world_size\(\)=2"):
        distributed.scatter_dataset(np.zeros(4), shuffle=True)


def test_scatter_refuses_what_has_no_length():
    with pytest.raises(TypeError, match="dataset must support len"):
        distributed.scatter_dataset(iter([1, 2]))


def test_backend_is_the_selected_one():
    assert keras.config.backend() == distribute.BACKEND


def test_evaluator_refuses_a_scattered_that_is_not_a_bool():
    from conftest import make_classifier

    from ktrainer.training.extensions import Evaluator

    x = np.zeros((4, 4), "float32")
    with pytest.raises(TypeError, match=r"scattered must be None, True or False"):
        Evaluator((x, np.zeros(4, "int32")), make_classifier(), scattered="yes")


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_iterator_resumes_on_another_process_count(monkeypatch, tmp_path, shuffle):
    from ktrainer.serializers import load_hdf5, save_hdf5

    # 2 processes, 8 examples each in batches of 2: 3 batches done.
    _fake_processes(monkeypatch, 0, 2)
    share = SerialIterator(np.arange(8), 2, shuffle=shuffle)
    for _ in range(3):
        next(share)
    path = str(tmp_path / "it.h5")
    save_hdf5(path, share)
    # Resumed on 1 process over all 16 examples: the same fraction, 6 of 16.
    _fake_processes(monkeypatch, 0, 1)
    whole = SerialIterator(np.arange(16), 4, shuffle=shuffle)
    load_hdf5(path, whole)
    assert (whole.epoch, whole.current_position) == (0, 12)
    assert whole.epoch_detail == share.epoch_detail == 0.75
    assert len(next(whole)) == 4
