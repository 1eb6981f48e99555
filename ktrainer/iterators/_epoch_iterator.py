"""What the index-based iterators share: checks, epoch bookkeeping, state."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ktrainer.dataset._example_batch import make_gather, make_stack
from ktrainer.dataset.iterator import Iterator
from ktrainer.iterators._order_samplers import ShuffleOrderSampler
from ktrainer.iterators._statemachine import (
    IteratorState,
    OrderSamplerLike,
    check_order,
)


def check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be a positive int. Received: {name}={value!r} of type "
            f"{type(value).__name__}"
        )
    if value <= 0:
        raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")


def _check_dataset(dataset: Any) -> None:
    kind = type(dataset)
    if not (hasattr(kind, "__len__") and hasattr(kind, "__getitem__")):
        raise TypeError(
            "dataset must support len() and indexing (a list, a numpy array, "
            "a TupleDataset...). Received: dataset of type "
            f"{kind.__name__}"
        )


def _resolve_order_sampler(
    shuffle: bool | None, order_sampler: OrderSamplerLike | None
) -> OrderSamplerLike | None:
    if shuffle is not None and order_sampler is not None:
        raise ValueError(
            "shuffle must be None when an order_sampler is given (the sampler "
            f"decides the order). Received: shuffle={shuffle!r} and "
            f"order_sampler={order_sampler!r}"
        )
    if order_sampler is not None:
        if not callable(order_sampler):
            raise TypeError(
                "order_sampler must be callable as order_sampler(order, "
                f"position). Received: order_sampler={order_sampler!r}"
            )
        return order_sampler
    if shuffle is None or shuffle:
        return ShuffleOrderSampler()
    return None


class EpochIterator(Iterator):
    """An iterator over a dataset by index order, with Chainer's bookkeeping.

    Subclasses produce batches; this class holds the validated arguments,
    the `IteratorState` and the epoch properties, and serializes them.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        repeat: bool,
        shuffle: bool | None,
        order_sampler: OrderSamplerLike | None,
    ) -> None:
        _check_dataset(dataset)
        check_positive_int("batch_size", batch_size)
        if repeat and len(dataset) == 0:
            raise ValueError(
                "dataset must not be empty when repeat=True. Received: a "
                "dataset of length 0"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self._repeat = repeat
        self._shuffle = shuffle
        self.order_sampler = _resolve_order_sampler(shuffle, order_sampler)
        self._gather = make_gather(dataset)
        self._stack = make_stack(dataset)  # None: no stacked fast path
        self.reset()

    def reset(self) -> None:
        """Restarts from the first batch of epoch 0 (with a new order)."""
        order = None
        if self.order_sampler is not None:
            # The order may be longer or shorter than the dataset (over- or
            # under-sampling): as in Chainer, an epoch is one pass over it.
            order = np.asarray(self.order_sampler(np.arange(len(self.dataset)), 0))
            check_order(order, len(self.dataset), self._repeat)
        self._state = IteratorState(0, 0, False, order)
        # -1 stands for None: not every serializer can store None.
        self._previous_epoch_detail = -1.0

    @property
    def current_position(self) -> int:
        """The position of the next batch in the current epoch's order."""
        return self._state.current_position

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def is_new_epoch(self) -> bool:
        return self._state.is_new_epoch

    @property
    def epoch_detail(self) -> float:
        size = self.epoch_size
        if size == 0:
            return float(self.epoch)
        return self.epoch + self.current_position / size

    @property
    def previous_epoch_detail(self) -> float | None:
        if self._previous_epoch_detail < 0:
            return None
        return self._previous_epoch_detail

    @property
    def repeat(self) -> bool:
        return self._repeat

    @property
    def epoch_size(self) -> int:
        """Examples in one epoch: the length of the epoch's order.

        The dataset's length, unless an order sampler draws a longer or
        shorter order (over- or under-sampling): as in Chainer, an epoch
        is one pass over the order. Triggers and progress reports read it.
        """
        order = self._state.order
        return len(self.dataset) if order is None else len(order)

    def serialize(self, serializer) -> None:
        """Saves or loads the position, epoch, order and sampler state.

        The epoch's length and the number of processes of the run are
        saved too. A snapshot of a run on another number of processes
        (each iterating over its share of the data, so with another epoch
        length) keeps the epoch and the fraction of it done: the position
        is scaled to this epoch's length (rounded down), so that the
        global position carries over. A saved shuffled order of another
        length cannot be reused: the rest of that epoch follows a fresh
        order, drawn after the sampler's state is loaded. With the same
        number of processes, a shuffled order of another length is
        refused (another dataset).
        """
        from ktrainer._backend import distribute
        from ktrainer.serializers import Deserializer

        size, processes = self.epoch_size, distribute.process_count()
        loading = isinstance(serializer, Deserializer)
        current_position = serializer("current_position", self.current_position)
        epoch = serializer("epoch", self.epoch)
        is_new_epoch = serializer("is_new_epoch", self.is_new_epoch)
        saved_size = saved_processes = None
        try:
            # Read as new values (None in a checking pass, which hands back
            # what it is given): compared below, not loaded into anything.
            saved_size = serializer("epoch_size", None if loading else size)
            saved_processes = serializer("processes", None if loading else processes)
        except KeyError:  # a snapshot from before they were saved
            pass
        order = self._state.order
        if order is not None:
            stored = serializer("order", None if loading else order)
            if loading and stored is not None:
                order = np.asarray(stored)
        other_run = (
            loading
            and saved_size is not None
            and int(saved_size) not in (size, 0)
            and saved_processes is not None
            and int(saved_processes) != processes
        )
        if loading and not other_run and order is not None and len(order) != size:
            # Before anything else is loaded, so nothing changes.
            raise ValueError(
                f"the saved order holds {len(order)} indices, but this iterator's "
                f"epoch has {size}: load the snapshot into an iterator over the "
                "same dataset. Received: a snapshot of an iterator over "
                "another dataset"
            )
        previous = serializer("previous_epoch_detail", self._previous_epoch_detail)
        if hasattr(self.order_sampler, "serialize"):
            self.order_sampler.serialize(serializer["order_sampler"])
        if not loading:
            return
        if other_run:
            current_position = int(current_position) * size // int(saved_size)
            if order is not None and len(order) != size:
                order = np.asarray(self.order_sampler(np.arange(len(self.dataset)), 0))
                check_order(order, len(self.dataset), self._repeat)
        self._previous_epoch_detail = previous
        self._state = IteratorState(current_position, epoch, is_new_epoch, order)
