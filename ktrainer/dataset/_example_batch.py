"""The fast batch path: a list of examples that keeps them stacked too.

Building a batch example by example and stacking it again costs Python
work per example. For datasets made of numpy arrays (a plain array or a
`TupleDataset` of arrays) the iterators instead gather each array once with
a fancy index, and return an `ExampleBatch`: a real `list` of example
tuples (rows of the gathered arrays, built in C by `zip`) that also holds
the gathered arrays, which `concat_examples` returns without stacking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ktrainer.dataset.tuple_dataset import TupleDataset


class ExampleBatch(list):
    """A list of examples that also holds them stacked per component.

    It behaves as the list of examples Chainer's iterators return
    (`len`, indexing, iteration, `isinstance(batch, list)`); the examples
    are views of the stacked arrays. Mutating the list drops the stacked
    form, so `concat_examples` then stacks the examples as usual.
    """

    __slots__ = ("_stacked",)

    def __init__(self, stacked: tuple | np.ndarray) -> None:
        if isinstance(stacked, tuple):
            super().__init__(zip(*stacked))
        else:
            super().__init__(stacked)
        self._stacked = stacked

    @property
    def stacked(self) -> tuple | np.ndarray | None:
        """The examples stacked per component, or `None` once the list changed.

        A tuple of arrays for tuple examples, one array for array examples;
        the arrays share memory with the examples.
        """
        return self._stacked


def _invalidating(name: str) -> Callable:
    method = getattr(list, name)

    def mutate(self, *args, **kwargs):
        self._stacked = None
        return method(self, *args, **kwargs)

    mutate.__name__ = mutate.__qualname__ = name
    mutate.__doc__ = method.__doc__
    return mutate


# Every in-place list operation may make the examples differ from the
# stacked arrays, so each one drops them first.
for _name in (
    "__setitem__",
    "__delitem__",
    "__iadd__",
    "__imul__",
    "append",
    "clear",
    "extend",
    "insert",
    "pop",
    "remove",
    "reverse",
    "sort",
):
    setattr(ExampleBatch, _name, _invalidating(_name))


def _gather_examples(dataset: Any) -> Callable[[np.ndarray], list]:
    def gather(indices: np.ndarray) -> list:
        return [dataset[index] for index in indices]

    return gather


def is_stackable(dataset: Any) -> bool:
    """Whether batches of `dataset` can be gathered with fancy indexing.

    True for a numpy array and for a `TupleDataset` of numpy arrays; a
    `TupleDataset` subclass that overrides `__getitem__` (to augment, say)
    is read example by example, so that it sees every read.
    """
    if isinstance(dataset, np.ndarray):
        return True
    return getattr(type(dataset), "__getitem__", None) is (
        TupleDataset.__getitem__
    ) and all(isinstance(d, np.ndarray) for d in dataset.datasets)


def make_gather(dataset: Any) -> Callable[[np.ndarray], list]:
    """Returns a function that builds the batch of the given indices.

    Stackable datasets (see `is_stackable`) get an `ExampleBatch` built
    with one fancy index per array; any other dataset is read one example
    at a time, as Chainer does.
    """
    stack = make_stack(dataset)
    if stack is not None:
        return lambda indices: ExampleBatch(stack(indices))
    return _gather_examples(dataset)


def make_stack(dataset: Any) -> Callable[[np.ndarray], Any] | None:
    """Returns a function from indices to the stacked batch, or `None`.

    What `concat_examples` would return for the `ExampleBatch` of
    `make_gather`, without building its list of examples: a batch's
    consumer that only wants the arrays (`StandardUpdater` with the
    default converter) skips that per-example work. `None` for datasets
    that are read example by example.
    """
    if isinstance(dataset, np.ndarray):
        return lambda indices: dataset[indices]
    if is_stackable(dataset):
        arrays = dataset.datasets
        return lambda indices: tuple(a[indices] for a in arrays)
    return None
