"""Iterators saved and loaded with the real ktrainer serializers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ktrainer.dataset import TupleDataset
from ktrainer.iterators import MultithreadIterator, SerialIterator, ShuffleOrderSampler
from ktrainer.serializers import (
    DictionarySerializer,
    NpzDeserializer,
    load_hdf5,
    load_npz,
    save_hdf5,
    save_npz,
)


def _dataset() -> TupleDataset:
    return TupleDataset(np.arange(14, dtype="float32").reshape(7, 2), np.arange(7))


def _labels(batch) -> list[int]:
    return [int(example[1]) for example in batch]


def _in_memory(source, target, tmp_path) -> None:
    saved = DictionarySerializer()
    source.serialize(saved)
    target.serialize(NpzDeserializer(saved.target))


def _npz(source, target, tmp_path) -> None:
    path = os.path.join(tmp_path, "iterator.npz")
    save_npz(path, source)
    load_npz(path, target)


def _hdf5(source, target, tmp_path) -> None:
    path = os.path.join(tmp_path, "iterator.h5")
    save_hdf5(path, source)
    load_hdf5(path, target)


ROUND_TRIPS = {"dictionary-npz": _in_memory, "npz-file": _npz, "hdf5-file": _hdf5}
SAMPLERS = {
    "default": dict,
    "generator": lambda: {
        "order_sampler": ShuffleOrderSampler(np.random.default_rng(4))
    },
}


@pytest.mark.parametrize(
    "cls", [SerialIterator, MultithreadIterator], ids=["serial", "multithread"]
)
@pytest.mark.parametrize(
    "round_trip", list(ROUND_TRIPS.values()), ids=list(ROUND_TRIPS)
)
@pytest.mark.parametrize("sampler", list(SAMPLERS.values()), ids=list(SAMPLERS))
def test_snapshot_resumes_mid_epoch(cls, round_trip, sampler, tmp_path):
    np.random.seed(0)
    with cls(_dataset(), 3, **sampler()) as reference:
        expected = [_labels(next(reference)) for _ in range(10)]
        expected_detail = reference.epoch_detail

    np.random.seed(0)
    with cls(_dataset(), 3, **sampler()) as source:
        for _ in range(4):  # mid-epoch: 12 of 14 examples of epoch 1 seen
            next(source)
        np.random.seed(5)
        with cls(_dataset(), 3, **sampler()) as fresh:
            round_trip(source, fresh, tmp_path)
            assert fresh.epoch == 1
            assert fresh.previous_epoch_detail == pytest.approx(9 / 7)
            assert [_labels(next(fresh)) for _ in range(6)] == expected[4:]
            assert fresh.epoch_detail == expected_detail


def test_load_of_a_mismatched_dataset_changes_nothing(tmp_path):
    path = os.path.join(tmp_path, "iterator.h5")
    save_hdf5(path, SerialIterator(list(range(5)), 2))
    np.random.seed(3)
    reference = SerialIterator(list(range(7)), 2)
    expected = [next(reference) for _ in range(5)]
    np.random.seed(3)
    target = SerialIterator(list(range(7)), 2)
    with pytest.raises(ValueError, match="order"):
        load_hdf5(path, target)
    assert [next(target) for _ in range(5)] == expected


class _Oversampler:
    """Draws each epoch twice as many examples as the dataset holds."""

    def __init__(self, seed: int) -> None:
        self._shuffle = ShuffleOrderSampler(np.random.RandomState(seed))

    def __call__(self, order, position):
        n = len(_dataset())
        return np.concatenate([self._shuffle(np.arange(n), 0) for _ in range(2)])

    def serialize(self, serializer) -> None:
        self._shuffle.serialize(serializer)


@pytest.mark.parametrize(
    "cls", [SerialIterator, MultithreadIterator], ids=["serial", "multithread"]
)
def test_hdf5_snapshot_of_an_oversampled_epoch_resumes(cls, tmp_path):
    with cls(_dataset(), 3, order_sampler=_Oversampler(0)) as reference:
        expected = [_labels(next(reference)) for _ in range(12)]

    with cls(_dataset(), 3, order_sampler=_Oversampler(0)) as source:
        for _ in range(6):  # 18 of the 14-long epoch 0, then 4 of epoch 1
            next(source)
        assert source.epoch == 1
        assert source.epoch_detail == pytest.approx(1 + 4 / 14)
        with cls(_dataset(), 3, order_sampler=_Oversampler(9)) as fresh:
            _hdf5(source, fresh, tmp_path)
            assert fresh.epoch_detail == pytest.approx(1 + 4 / 14)
            assert [_labels(next(fresh)) for _ in range(6)] == expected[6:]
