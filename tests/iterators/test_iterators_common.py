"""Chainer's iterator semantics, checked for SerialIterator and MultithreadIterator."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _iterator_memory_serializer import (
    CheckingDeserializer,
    MemoryDeserializer,
    MemorySerializer,
)

from ktrainer.dataset import TupleDataset
from ktrainer.iterators import MultithreadIterator, SerialIterator, ShuffleOrderSampler


@pytest.fixture(
    params=[SerialIterator, MultithreadIterator], ids=["serial", "multithread"]
)
def make_iterator(request):
    """Builds iterators of the class under test; finalizes them afterwards."""
    created = []

    def make(*args, **kwargs):
        iterator = request.param(*args, **kwargs)
        created.append(iterator)
        return iterator

    yield make
    for iterator in created:
        iterator.finalize()


def _dataset(n: int) -> list:
    return [(np.float32(i), i) for i in range(n)]


def _labels(batch) -> list[int]:
    return [int(example[1]) for example in batch]


# (n, batch_size, [(labels, epoch, epoch_detail, previous_epoch_detail, is_new_epoch)])
UNSHUFFLED_REPEAT = [
    (
        6,
        2,
        [
            ([0, 1], 0, 2 / 6, 0.0, False),
            ([2, 3], 0, 4 / 6, 2 / 6, False),
            ([4, 5], 1, 1.0, 4 / 6, True),
            ([0, 1], 1, 8 / 6, 1.0, False),
            ([2, 3], 1, 10 / 6, 8 / 6, False),
            ([4, 5], 2, 2.0, 10 / 6, True),
        ],
    ),
    (
        5,
        2,
        [
            ([0, 1], 0, 0.4, 0.0, False),
            ([2, 3], 0, 0.8, 0.4, False),
            ([4, 0], 1, 1.2, 0.8, True),
            ([1, 2], 1, 1.6, 1.2, False),
            ([3, 4], 2, 2.0, 1.6, True),
            ([0, 1], 2, 2.4, 2.0, False),
        ],
    ),
    (
        3,
        7,
        [
            ([0, 1, 2, 0, 1, 2, 0], 2, 7 / 3, 0.0, True),
            ([1, 2, 0, 1, 2, 0, 1], 4, 14 / 3, 7 / 3, True),
        ],
    ),
]


@pytest.mark.parametrize(
    ("n", "batch_size", "expected"),
    UNSHUFFLED_REPEAT,
    ids=["divisible", "not-divisible", "batch-larger-than-dataset"],
)
def test_epoch_bookkeeping_repeat(make_iterator, n, batch_size, expected):
    iterator = make_iterator(_dataset(n), batch_size, shuffle=False)
    assert iterator.epoch == 0
    assert iterator.epoch_detail == 0.0
    assert iterator.previous_epoch_detail is None
    assert iterator.is_new_epoch is False
    for labels, epoch, detail, previous, is_new in expected:
        batch = iterator.next()
        assert _labels(batch) == labels
        assert iterator.epoch == epoch
        assert iterator.epoch_detail == pytest.approx(detail)
        assert iterator.previous_epoch_detail == pytest.approx(previous)
        assert iterator.is_new_epoch is is_new


# (n, batch_size, expected batches of one pass)
UNSHUFFLED_ONE_PASS = [
    (6, 2, [[0, 1], [2, 3], [4, 5]]),
    (5, 2, [[0, 1], [2, 3], [4]]),
    (3, 7, [[0, 1, 2]]),
]


@pytest.mark.parametrize(
    ("n", "batch_size", "expected"),
    UNSHUFFLED_ONE_PASS,
    ids=["divisible", "not-divisible", "batch-larger-than-dataset"],
)
def test_repeat_false_stops_after_one_epoch(make_iterator, n, batch_size, expected):
    iterator = make_iterator(_dataset(n), batch_size, repeat=False, shuffle=False)
    batches = [_labels(batch) for batch in iterator]
    assert batches == expected
    assert iterator.epoch == 1
    assert iterator.epoch_detail == 1.0
    assert iterator.is_new_epoch is True
    with pytest.raises(StopIteration):
        next(iterator)
    # After the end, the previous epoch detail catches up, as in Chainer.
    assert iterator.previous_epoch_detail == 1.0


@pytest.mark.parametrize(
    ("n", "batch_size"),
    [(10, 5), (10, 3), (4, 6)],
    ids=["divisible", "not-divisible", "batch-larger-than-dataset"],
)
def test_shuffle_visits_each_example_once_per_epoch(make_iterator, n, batch_size):
    iterator = make_iterator(_dataset(n), batch_size, shuffle=True)
    stream = []
    while iterator.epoch < 3:
        stream += _labels(next(iterator))
    epochs = [stream[k * n : (k + 1) * n] for k in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(n))
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]


def test_shuffle_one_pass_is_a_permutation(make_iterator):
    iterator = make_iterator(_dataset(7), 3, repeat=False)
    stream = [label for batch in iterator for label in _labels(batch)]
    assert sorted(stream) == list(range(7))
    assert stream != list(range(7))


def test_default_shuffle_is_reproducible_from_numpy_seed(make_iterator):
    np.random.seed(42)
    first = _labels(next(make_iterator(_dataset(20), 20)))
    np.random.seed(42)
    second = _labels(next(make_iterator(_dataset(20), 20)))
    assert first == second
    assert first != list(range(20))


def test_custom_order_sampler_gets_order_and_position(make_iterator):
    calls = []

    def reverse(order, position):
        calls.append((order.tolist(), position))
        return order[::-1].copy()

    iterator = make_iterator(_dataset(4), 3, order_sampler=reverse)
    assert _labels(next(iterator)) == [3, 2, 1]
    assert _labels(next(iterator)) == [0, 0, 1]
    assert calls[:2] == [([0, 1, 2, 3], 0), ([3, 2, 1, 0], 3)]


def test_reset_restarts_from_epoch_zero(make_iterator):
    iterator = make_iterator(_dataset(5), 2, shuffle=False)
    for _ in range(4):
        next(iterator)
    iterator.reset()
    assert (iterator.epoch, iterator.current_position) == (0, 0)
    assert iterator.previous_epoch_detail is None
    assert iterator.is_new_epoch is False
    assert _labels(next(iterator)) == [0, 1]


def test_iteration_protocol_and_context_manager(make_iterator):
    iterator = make_iterator(
        TupleDataset(np.arange(4.0), np.arange(4)), 2, shuffle=False
    )
    assert iter(iterator) is iterator
    with iterator as entered:
        assert entered is iterator
        assert _labels(entered.next()) == [0, 1]
    assert iterator.batch_size == 2
    assert iterator.repeat is True


def _snapshot_state(iterator) -> tuple:
    return (
        iterator.epoch,
        iterator.current_position,
        iterator.is_new_epoch,
        iterator.epoch_detail,
        iterator.previous_epoch_detail,
    )


def _run(iterator, n_batches: int) -> list[tuple]:
    return [
        (_labels(next(iterator)), _snapshot_state(iterator)) for _ in range(n_batches)
    ]


# (n, batch_size, batches before the snapshot, how the order is drawn)
RESUME = [
    (10, 3, 2, "default"),
    (10, 3, 7, "default"),
    (6, 2, 2, "default"),  # the next batch ends the epoch
    (6, 2, 3, "default"),  # the snapshot is at an epoch boundary
    (5, 2, 4, "random_state"),
    (5, 2, 4, "generator"),
    (5, 2, 3, "unshuffled"),
    (3, 7, 1, "default"),
]


def _order_kwargs(kind: str) -> dict:
    if kind == "random_state":
        return {"order_sampler": ShuffleOrderSampler(np.random.RandomState(3))}
    if kind == "generator":
        return {"order_sampler": ShuffleOrderSampler(np.random.default_rng(3))}
    if kind == "unshuffled":
        return {"shuffle": False}
    return {}


@pytest.mark.parametrize(
    ("n", "batch_size", "stop", "kind"),
    RESUME,
    ids=[f"n{n}-b{b}-stop{s}-{k}" for n, b, s, k in RESUME],
)
def test_resume_continues_like_an_uninterrupted_run(
    make_iterator, n, batch_size, stop, kind
):
    np.random.seed(0)
    uninterrupted = make_iterator(_dataset(n), batch_size, **_order_kwargs(kind))
    expected = _run(uninterrupted, stop + 8)

    np.random.seed(0)
    interrupted = make_iterator(_dataset(n), batch_size, **_order_kwargs(kind))
    assert _run(interrupted, stop) == expected[:stop]
    saved = MemorySerializer()
    interrupted.serialize(saved)

    np.random.seed(1)  # the fresh iterator starts from a different order
    fresh = make_iterator(_dataset(n), batch_size, **_order_kwargs(kind))
    fresh.serialize(CheckingDeserializer(saved.target))
    fresh.serialize(MemoryDeserializer(saved.target))
    assert _snapshot_state(fresh) == expected[stop - 1][1]
    assert _run(fresh, 8) == expected[stop:]


def test_saving_does_not_change_the_following_batches(make_iterator):
    np.random.seed(0)
    expected = _run(make_iterator(_dataset(6), 2), 12)
    np.random.seed(0)
    iterator = make_iterator(_dataset(6), 2)
    got = []
    for _ in range(12):
        got += _run(iterator, 1)
        iterator.serialize(MemorySerializer())
    assert got == expected


def test_checking_phase_of_a_load_changes_nothing(make_iterator):
    np.random.seed(0)
    expected = _run(make_iterator(_dataset(6), 2), 9)
    np.random.seed(0)
    source = make_iterator(_dataset(6), 2)
    _run(source, 5)
    saved = MemorySerializer()
    source.serialize(saved)

    np.random.seed(0)
    iterator = make_iterator(_dataset(6), 2)
    got = _run(iterator, 2)
    iterator.serialize(CheckingDeserializer(saved.target))
    got += _run(iterator, 7)
    assert got == expected


def test_serialized_state_is_plain_numbers(make_iterator):
    iterator = make_iterator(_dataset(5), 2)
    _run(iterator, 3)
    saved = MemorySerializer()
    iterator.serialize(saved)
    assert {"current_position", "epoch", "is_new_epoch", "order"} <= set(saved.target)
    assert saved.target["previous_epoch_detail"] == pytest.approx(0.8)
    for key, value in saved.target.items():
        if isinstance(value, np.ndarray):
            assert value.dtype.kind in "iuf", key
        else:
            assert isinstance(value, (bool, int, float)), key


def test_previous_epoch_detail_none_survives_a_round_trip(make_iterator):
    saved = MemorySerializer()
    make_iterator(_dataset(4), 2).serialize(saved)
    assert saved.target["previous_epoch_detail"] == -1.0
    fresh = make_iterator(_dataset(4), 2)
    next(fresh)
    fresh.serialize(MemoryDeserializer(saved.target))
    assert fresh.previous_epoch_detail is None
    assert fresh.epoch_detail == 0.0


# (kwargs, error type, words the message must contain)
BAD_ARGUMENTS = [
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": -2}, ValueError, "batch_size"),
    ({"batch_size": 1.5}, TypeError, "batch_size"),
    ({"batch_size": True}, TypeError, "batch_size"),
    ({"dataset": 5}, TypeError, "dataset"),
    ({"dataset": []}, ValueError, "dataset"),
    (
        {"shuffle": True, "order_sampler": ShuffleOrderSampler()},
        ValueError,
        "order_sampler",
    ),
    ({"order_sampler": "random"}, TypeError, "order_sampler"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    BAD_ARGUMENTS,
    ids=[
        "batch-size-zero",
        "batch-size-negative",
        "batch-size-float",
        "batch-size-bool",
        "dataset-without-len",
        "empty-dataset-repeat",
        "shuffle-and-sampler",
        "sampler-not-callable",
    ],
)
def test_bad_arguments_name_the_argument(make_iterator, kwargs, error, word):
    arguments = {"dataset": _dataset(4), "batch_size": 2, **kwargs}
    with pytest.raises(error, match=word) as info:
        make_iterator(**arguments)
    assert "Received" in str(info.value)


def test_empty_dataset_one_pass_gives_one_empty_batch(make_iterator):
    iterator = make_iterator([], 2, repeat=False)
    assert list(next(iterator)) == []
    assert iterator.epoch == 1
    with pytest.raises(StopIteration):
        next(iterator)


class _FixedOrder:
    """An order sampler that returns the same order every epoch."""

    def __init__(self, order) -> None:
        self.order = np.asarray(order)
        self.calls = 0

    def __call__(self, current_order, current_position):
        self.calls += 1
        return self.order.copy()


# An over-sampling order (6 draws from 4 examples) and an under-sampling one.
OVERSAMPLED = [0, 0, 1, 1, 2, 3]
UNDERSAMPLED = [4, 1]


def test_order_longer_than_the_dataset_sets_the_epoch_length(make_iterator):
    iterator = make_iterator(_dataset(4), 4, order_sampler=_FixedOrder(OVERSAMPLED))
    assert _labels(next(iterator)) == [0, 0, 1, 1]
    assert (iterator.epoch, iterator.is_new_epoch) == (0, False)
    assert iterator.epoch_detail == pytest.approx(4 / 6)
    assert _labels(next(iterator)) == [2, 3, 0, 0]
    assert (iterator.epoch, iterator.is_new_epoch) == (1, True)
    assert iterator.epoch_detail == pytest.approx(1 + 2 / 6)
    assert iterator.previous_epoch_detail == pytest.approx(4 / 6)
    assert _labels(next(iterator)) == [1, 1, 2, 3]
    assert (iterator.epoch, iterator.is_new_epoch) == (2, True)
    assert iterator.epoch_detail == 2.0


@pytest.mark.parametrize(
    ("order", "batch_size", "expected"),
    [
        (OVERSAMPLED, 4, [[0, 0, 1, 1], [2, 3]]),
        (UNDERSAMPLED, 3, [[4, 1]]),
        (UNDERSAMPLED, 1, [[4], [1]]),
    ],
    ids=["oversampled", "undersampled", "undersampled-batch-1"],
)
def test_one_pass_follows_the_order_not_the_dataset(
    make_iterator, order, batch_size, expected
):
    iterator = make_iterator(
        _dataset(5), batch_size, repeat=False, order_sampler=_FixedOrder(order)
    )
    batches = []
    details = []
    for batch in iterator:
        batches.append(_labels(batch))
        details.append(iterator.epoch_detail)
    assert batches == expected
    assert details[-1] == 1.0
    assert details == sorted(details)
    assert (iterator.epoch, iterator.is_new_epoch) == (1, True)


@pytest.mark.parametrize("stop", [1, 2, 3, 4], ids=lambda s: f"stop{s}")
def test_resume_with_an_order_longer_than_the_dataset(make_iterator, stop):
    def make():
        sampler = ShuffleOrderSampler(np.random.RandomState(7))

        def oversample(order, position):
            # Two shuffled passes over the dataset per epoch.
            n = 4
            return np.concatenate([sampler(np.arange(n), 0), sampler(np.arange(n), 0)])

        oversample.serialize = sampler.serialize
        return make_iterator(_dataset(4), 3, order_sampler=oversample)

    expected = _run(make(), stop + 6)
    interrupted = make()
    assert _run(interrupted, stop) == expected[:stop]
    saved = MemorySerializer()
    interrupted.serialize(saved)
    assert saved.target["order"].shape == (8,)

    fresh = make()
    next(fresh)
    fresh.serialize(CheckingDeserializer(saved.target))
    fresh.serialize(MemoryDeserializer(saved.target))
    assert _snapshot_state(fresh) == expected[stop - 1][1]
    assert _run(fresh, 6) == expected[stop:]


# (sampler, error type, words the message must contain)
BAD_ORDERS = [
    (lambda order, pos: order if pos == 0 else order[:-1], ValueError, "previous"),
    (lambda order, pos: order[:0], ValueError, "non-empty"),
    (lambda order, pos: np.array([0, 4]), ValueError, r"\[0, 4\)"),
    (lambda order, pos: np.array([-1, 0]), ValueError, r"\[0, 4\)"),
    (lambda order, pos: order.astype("float32"), TypeError, "integer"),
    (lambda order, pos: np.zeros((2, 2), "int64"), TypeError, "1-D"),
]


@pytest.mark.parametrize(
    ("sampler", "error", "words"),
    BAD_ORDERS,
    ids=[
        "length-changes-later",
        "empty-with-repeat",
        "index-past-the-end",
        "negative-index",
        "float-indices",
        "two-dimensional",
    ],
)
def test_bad_orders_are_rejected(make_iterator, sampler, error, words):
    def build_and_run():
        iterator = make_iterator(_dataset(4), 3, order_sampler=sampler)
        list(itertools.islice(iterator, 3))

    with pytest.raises(error, match=f"order_sampler.*{words}") as info:
        build_and_run()
    assert "Received" in str(info.value)


def test_empty_order_without_repeat_gives_one_empty_batch(make_iterator):
    iterator = make_iterator(
        _dataset(4), 3, repeat=False, order_sampler=lambda order, pos: order[:0]
    )
    assert list(next(iterator)) == []
    with pytest.raises(StopIteration):
        next(iterator)
