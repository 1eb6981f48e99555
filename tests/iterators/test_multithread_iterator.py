"""MultithreadIterator: background loading, thread pool life cycle."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _iterator_memory_serializer import MemoryDeserializer, MemorySerializer

from ktrainer.dataset import TupleDataset, concat_examples
from ktrainer.iterators import MultithreadIterator, SerialIterator, ShuffleOrderSampler


def _sampler(seed: int = 0) -> ShuffleOrderSampler:
    return ShuffleOrderSampler(np.random.RandomState(seed))


def _labels(batch) -> list[int]:
    return [int(example[1]) for example in batch]


class _RecordingDataset:
    """A slow-path dataset that records which thread reads each example."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.threads: set[str] = set()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        self.threads.add(threading.current_thread().name)
        if index < 0 or index >= self.n:
            raise IndexError(index)
        return (np.float32(index), int(index))


DATASETS = [
    ("list-1-thread", lambda n: [(np.float32(i), i) for i in range(n)], 1),
    ("list-3-threads", lambda n: [(np.float32(i), i) for i in range(n)], 3),
    (
        "tuple-dataset",
        lambda n: TupleDataset(np.arange(n, dtype="float32"), np.arange(n)),
        2,
    ),
]


@pytest.mark.parametrize(
    ("build", "n_threads"),
    [(b, t) for _, b, t in DATASETS],
    ids=[i for i, _, _ in DATASETS],
)
def test_same_batches_as_serial_iterator(build, n_threads):
    serial = SerialIterator(build(11), 4, order_sampler=_sampler())
    with MultithreadIterator(
        build(11), 4, n_threads=n_threads, order_sampler=_sampler()
    ) as threaded:
        for _ in range(9):
            expected, got = next(serial), next(threaded)
            assert _labels(got) == _labels(expected)
            assert type(got) is type(expected)
            assert threaded.epoch_detail == serial.epoch_detail
            assert threaded.is_new_epoch == serial.is_new_epoch


def test_examples_are_read_on_worker_threads():
    dataset = _RecordingDataset(8)
    with MultithreadIterator(dataset, 4, n_threads=2, shuffle=False) as iterator:
        assert _labels(next(iterator)) == [0, 1, 2, 3]
    assert dataset.threads
    assert threading.current_thread().name not in dataset.threads
    assert all(name.startswith("MultithreadIterator") for name in dataset.threads)


def test_finalize_stops_threads_and_iteration_can_go_on():
    expected = SerialIterator(list(range(6)), 4, order_sampler=_sampler())
    iterator = MultithreadIterator(list(range(6)), 4, order_sampler=_sampler())
    got = [next(iterator)]
    iterator.finalize()
    assert iterator._executor is None
    got += [next(iterator), next(iterator)]
    iterator.finalize()
    assert got == [next(expected) for _ in range(3)]


def test_reading_error_propagates_from_next():
    class Broken(_RecordingDataset):
        def __getitem__(self, index):
            raise KeyError(f"no example {index}")

    with MultithreadIterator(Broken(4), 2) as iterator, pytest.raises(KeyError):
        next(iterator)


def test_resume_from_serial_iterator_snapshot():
    """Both iterators save the same entries, so either can load the other's."""
    serial = SerialIterator(list(range(7)), 3, order_sampler=_sampler(5))
    for _ in range(2):
        next(serial)
    saved = MemorySerializer()
    serial.serialize(saved)
    with MultithreadIterator(list(range(7)), 3, order_sampler=_sampler(9)) as threaded:
        threaded.serialize(MemoryDeserializer(saved.target))
        for _ in range(5):
            assert next(threaded) == next(serial)


@pytest.mark.parametrize(
    ("n_threads", "error"),
    [(0, ValueError), (-1, ValueError), ("2", TypeError), (2.0, TypeError)],
    ids=["zero", "negative", "string", "float"],
)
def test_bad_n_threads_is_named(n_threads, error):
    with pytest.raises(error, match="n_threads"):
        MultithreadIterator(list(range(4)), 2, n_threads=n_threads)


def test_concat_of_threaded_numpy_batch_is_stacked():
    x = np.arange(12, dtype="float32").reshape(6, 2)
    with MultithreadIterator(TupleDataset(x, np.arange(6)), 3, shuffle=False) as it:
        bx, by = concat_examples(next(it))
    np.testing.assert_array_equal(bx, x[:3])
    np.testing.assert_array_equal(by, [0, 1, 2])
