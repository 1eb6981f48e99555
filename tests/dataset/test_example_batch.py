"""ExampleBatch: a list of examples that stays stacked until mutated."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from ktrainer.dataset._example_batch import ExampleBatch


def _batch() -> ExampleBatch:
    return ExampleBatch((np.arange(6.0).reshape(3, 2), np.array([7, 8, 9])))


def test_behaves_as_a_list_of_example_tuples():
    batch = _batch()
    assert isinstance(batch, list)
    assert len(batch) == 3
    x, y = batch[1]
    np.testing.assert_array_equal(x, [2.0, 3.0])
    assert y == 8
    assert [int(e[1]) for e in batch] == [7, 8, 9]
    assert type(batch[:2]) is list
    assert len(list(batch)) == 3
    assert int(batch[-1][1]) == 9


def test_examples_view_the_stacked_arrays():
    batch = _batch()
    batch[0][0][:] = -1
    np.testing.assert_array_equal(batch.stacked[0][0], [-1, -1])


MUTATIONS = {
    "setitem": lambda b: b.__setitem__(0, (np.zeros(2), 0)),
    "delitem": lambda b: b.__delitem__(0),
    "iadd": lambda b: b.__iadd__([(np.zeros(2), 0)]),
    "imul": lambda b: b.__imul__(2),
    "append": lambda b: b.append((np.zeros(2), 0)),
    "clear": lambda b: b.clear(),
    "extend": lambda b: b.extend([(np.zeros(2), 0)]),
    "insert": lambda b: b.insert(0, (np.zeros(2), 0)),
    "pop": lambda b: b.pop(),
    "remove": lambda b: b.remove(b[0]),
    "reverse": lambda b: b.reverse(),
    "sort": lambda b: b.sort(key=lambda e: -e[1]),
}


@pytest.mark.parametrize("mutate", list(MUTATIONS.values()), ids=list(MUTATIONS))
def test_mutation_drops_the_stacked_form(mutate):
    batch = _batch()
    mutate(batch)
    assert batch.stacked is None


def test_one_array_gives_rows():
    batch = ExampleBatch(np.array([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(batch[1], [3, 4])
    assert batch.stacked.shape == (2, 2)


def test_pickle_keeps_examples_and_stacked_arrays():
    batch = _batch()
    loaded = pickle.loads(pickle.dumps(batch))
    assert [int(e[1]) for e in loaded] == [7, 8, 9]
    np.testing.assert_array_equal(loaded.stacked[1], [7, 8, 9])
    assert [int(e[1]) for e in copy.copy(batch)] == [7, 8, 9]
