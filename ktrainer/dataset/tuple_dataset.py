"""A dataset that zips several equally long datasets into tuples."""

from __future__ import annotations

from typing import Any

import numpy as np


class TupleDataset:
    """A dataset whose `i`-th example is the tuple of each dataset's `i`-th item.

    The usual way to feed numpy arrays to an iterator:
    `TupleDataset(x, y)[i] == (x[i], y[i])`. When every component is a
    numpy array, `SerialIterator` and `MultithreadIterator` gather a batch
    with one fancy index per array instead of one lookup per example, and
    `concat_examples` returns those gathered arrays directly.

    Args:
        *datasets: the components, each supporting `len` and indexing; all
            of the same length.

    Example:

    ```python
    dataset = TupleDataset(x_train, y_train)
    iterator = SerialIterator(dataset, batch_size=64)
    ```
    """

    def __init__(self, *datasets: Any) -> None:
        if not datasets:
            raise ValueError(
                "TupleDataset needs at least one dataset. Received: no datasets"
            )
        lengths = []
        for i, dataset in enumerate(datasets):
            try:
                lengths.append(len(dataset))
            except TypeError:
                raise TypeError(
                    "datasets must support len() and indexing. Received: "
                    f"datasets[{i}] of type {type(dataset).__name__}"
                ) from None
        if len(set(lengths)) != 1:
            raise ValueError(
                f"datasets must all have the same length. Received: lengths {lengths}"
            )
        self._datasets = datasets
        self._length = lengths[0]

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        """Returns an example tuple, or a list of them for a slice or indices."""
        columns = [dataset[index] for dataset in self._datasets]
        if isinstance(index, (slice, list, np.ndarray)):
            return list(zip(*columns))
        return tuple(columns)

    @property
    def datasets(self) -> tuple:
        """The component datasets, in order."""
        return self._datasets
