"""`scatter_dataset`: an equal share of a dataset for every process."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from ktrainer.dataset.tuple_dataset import TupleDataset
from ktrainer.distributed._process import rank, world_size


def scatter_dataset(dataset: Any, *, shuffle: bool = False, seed: int | None = None):
    """Returns this process's share of `dataset`, as ChainerMN does.

    Every process gets `ceil(len(dataset) / world_size())` examples, so
    all take the same number of steps per epoch and no collective waits
    for a process that ran out; to make the shares equal, the last shares
    wrap around to the first examples (a few examples appear twice). The
    shares of all processes together cover the whole dataset. With one
    process the dataset is returned as it is (unless `shuffle`).

    Each process computes the split itself, so no data is sent; with
    `shuffle` every process must then draw the same permutation, which is
    why several processes need an explicit `seed`.

    A numpy array gives an array and a `TupleDataset` of numpy arrays a
    `TupleDataset` (iterators keep their fast gather); any other dataset
    (with `len` and indexing) gives a view of its share.

    Args:
        dataset: the whole dataset, the same in every process.
        shuffle: whether to permute the examples before splitting.
            Defaults to `False`.
        seed: the seed of the permutation. Defaults to `None` (a fresh
            one, only allowed in a run of one process).

    Returns:
        This process's share, with `len` and indexing.
    """
    try:
        n = len(dataset)
    except TypeError:
        raise TypeError(
            "dataset must support len() and indexing. Received: dataset of "
            f"type {type(dataset).__name__}"
        ) from None
    size, index = world_size(), rank()
    if shuffle and seed is None and size > 1:
        raise ValueError(
            "seed must be given with shuffle=True when several processes split "
            "the dataset, so that they all draw the same permutation. "
            f"Received: seed=None with world_size()={size}"
        )
    if size == 1 and not shuffle:
        return dataset
    indices = shard_indices(n, index, size, shuffle=shuffle, seed=seed)
    share = _take(dataset, indices)
    # Its own examples come first; the rest are the next share's (or, for
    # the last share, the first's) so that all shares are equally long.
    _register(share, dataset, indices, n * (index + 1) // size - n * index // size)
    return share


# Shares made by `scatter_dataset`, by id: an Evaluator given one counts
# the examples it shares with the next process's share once.
_SHARES: dict[int, tuple] = {}


def _register(share: Any, dataset: Any, indices: np.ndarray, own: int) -> None:
    key = id(share)
    try:
        ref = weakref.ref(share, lambda _, key=key: _SHARES.pop(key, None))
    except TypeError:  # cannot be tracked: treated as any user-made part
        return
    _SHARES[key] = (ref, dataset, indices, own)


def share_of(obj: Any) -> tuple[Any, np.ndarray, int] | None:
    """`(dataset, indices, own)` if `obj` is a share made by `scatter_dataset`.

    `indices` are the share's examples in `dataset`; the first `own` of
    them are this process's alone (the shares of all processes' `own`
    examples partition the dataset).
    """
    entry = _SHARES.get(id(obj))
    if entry is None or entry[0]() is not obj:
        return None
    return entry[1], entry[2], entry[3]


def evaluation_part(dataset: Any, index: int, size: int, *, whole: bool) -> Any:
    """Process `index`'s part of a validation set, for the Evaluator.

    The parts are consecutive, disjoint and as equal as can be (process
    `r` of `size` takes examples `[n*r//size, n*(r+1)//size)`); together
    they are the whole set, each example once. Unless `whole`, a share
    made by `scatter_dataset` gives its own examples only.
    """
    share = None if whole else share_of(dataset)
    if share is not None:
        whole, indices, own = share
        return _take(whole, indices[:own])
    n = len(dataset)
    if n < size:
        raise ValueError(
            "the validation set must hold at least one example per process to "
            f"be split over them. Received: {n} examples for {size} processes"
        )
    return _take(dataset, np.arange(n * index // size, n * (index + 1) // size))


def shard_indices(
    n: int, index: int, size: int, *, shuffle: bool = False, seed: int | None = None
) -> np.ndarray:
    """The example indices of share `index` of `size` over `n` examples."""
    if n < size:
        raise ValueError(
            "dataset must hold at least one example per process. Received: "
            f"len(dataset)={n} with world_size()={size}"
        )
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    per_share = -(-n // size)
    start = n * index // size
    return order[np.arange(start, start + per_share) % n]


def _take(dataset: Any, indices: np.ndarray):
    if isinstance(dataset, np.ndarray):
        return dataset[indices]
    if isinstance(dataset, TupleDataset) and all(
        isinstance(part, np.ndarray) for part in dataset.datasets
    ):
        return TupleDataset(*(part[indices] for part in dataset.datasets))
    return _Share(dataset, indices)


class _Share:
    """A read-only view of some examples of a dataset, in a given order."""

    def __init__(self, dataset: Any, indices: np.ndarray) -> None:
        self._dataset = dataset
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._dataset[int(i)] for i in self._indices[index]]
        if isinstance(index, (list, np.ndarray)):
            return [self._dataset[int(i)] for i in self._indices[np.asarray(index)]]
        return self._dataset[int(self._indices[index])]
