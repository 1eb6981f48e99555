"""TupleDataset: zipped datasets."""

from __future__ import annotations

import numpy as np
import pytest

from ktrainer.dataset import TupleDataset


def _dataset() -> TupleDataset:
    return TupleDataset(np.arange(10).reshape(5, 2), np.arange(5) * 10, list("abcde"))


def test_len_and_integer_index():
    dataset = _dataset()
    assert len(dataset) == 5
    x, y, z = dataset[3]
    np.testing.assert_array_equal(x, [6, 7])
    assert (y, z) == (30, "d")
    assert dataset[-1][2] == "e"


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (slice(1, 3), [10, 20]),
        (slice(None, None, 2), [0, 20, 40]),
        (np.array([4, 0]), [40, 0]),
    ],
    ids=["slice", "step-slice", "index-array"],
)
def test_many_indices_give_a_list_of_tuples(index, expected):
    dataset = TupleDataset(np.arange(10).reshape(5, 2), np.arange(5) * 10)
    examples = dataset[index]
    assert isinstance(examples, list)
    assert all(isinstance(e, tuple) and len(e) == 2 for e in examples)
    assert [int(e[1]) for e in examples] == expected


def test_list_index_on_list_components():
    dataset = TupleDataset(np.arange(3), np.arange(3) + 1)
    assert [tuple(map(int, e)) for e in dataset[[2, 0]]] == [(2, 3), (0, 1)]


def test_single_dataset_still_gives_tuples():
    assert TupleDataset([7, 8])[1] == (8,)


def test_datasets_property_keeps_components():
    x, y = np.zeros(3), np.ones(3)
    dataset = TupleDataset(x, y)
    assert dataset.datasets[0] is x
    assert dataset.datasets[1] is y


@pytest.mark.parametrize(
    ("datasets", "error", "words"),
    [
        ((), ValueError, "at least one"),
        ((np.zeros(3), np.zeros(4)), ValueError, r"same length.*\[3, 4\]"),
        ((np.zeros(3), 5), TypeError, r"datasets\[1\]"),
    ],
    ids=["none", "different-lengths", "no-len"],
)
def test_bad_datasets_are_explained(datasets, error, words):
    with pytest.raises(error, match=words) as info:
        TupleDataset(*datasets)
    assert "Received" in str(info.value)
