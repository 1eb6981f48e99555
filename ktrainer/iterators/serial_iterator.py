"""The iterator that reads batches in the calling thread."""

from __future__ import annotations

from typing import Any

from ktrainer.iterators._epoch_iterator import EpochIterator
from ktrainer.iterators._statemachine import OrderSamplerLike, advance


class SerialIterator(EpochIterator):
    """Iterates over a dataset in batches, in index order or shuffled.

    Each `next(iterator)` returns a list of `batch_size` examples. With
    `repeat=True` the iterator loops forever, and a batch that reaches the
    end of an epoch is completed from the start of the next epoch's order
    (`is_new_epoch` is then `True`). With `repeat=False` the last batch
    may be shorter, and the next call raises `StopIteration`.

    For a numpy array or a `TupleDataset` of numpy arrays, a batch is
    gathered with one fancy index per array. It is still a list of
    example tuples, and `concat_examples` turns it into arrays without
    restacking the examples.

    The position, epoch, order and the shuffle's random state are part of
    `serialize`, so a resumed run yields the same batches as an
    uninterrupted one.

    Args:
        dataset: the examples: anything with `len` and indexing.
        batch_size: the number of examples per batch.
        repeat: whether to loop over the dataset forever. Defaults to
            `True`.
        shuffle: whether to shuffle each epoch; `None` means `True` unless
            an `order_sampler` is given. Defaults to `None`.
        order_sampler: a callable `(current_order, current_position) ->
            order` that draws each epoch's order, such as
            `ShuffleOrderSampler(numpy.random.RandomState(seed))`; only
            with `shuffle=None`. The order may be longer or shorter than
            the dataset: an epoch is one pass over it (see
            `OrderSampler`). Defaults to `None`.

    Example:

    ```python
    train = TupleDataset(x_train, y_train)
    iterator = SerialIterator(train, batch_size=64)
    x, y = concat_examples(next(iterator))
    ```
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        repeat: bool = True,
        shuffle: bool | None = None,
        order_sampler: OrderSamplerLike | None = None,
    ) -> None:
        super().__init__(dataset, batch_size, repeat, shuffle, order_sampler)

    def __next__(self) -> list:
        return self._gather(self._next_indices())

    def _next_indices(self):
        self._previous_epoch_detail = self.epoch_detail
        self._state, indices = advance(
            self._state,
            self.batch_size,
            self._repeat,
            self.order_sampler,
            len(self.dataset),
        )
        if indices is None:
            raise StopIteration
        return indices

    def next_stacked(self):
        """The next batch as `concat_examples(next(self))` would return it.

        Advances exactly as `next` does, but returns the stacked arrays
        without building the list of examples. `StandardUpdater` uses it
        with its default converter; it is only defined for what
        `concat_examples` stacks without copying (`stackable`).

        Raises:
            StopIteration: as `next` does.
            TypeError: if the dataset is read example by example.
        """
        if self._stack is None:
            raise TypeError(
                "next_stacked() needs a numpy array or a TupleDataset of "
                f"numpy arrays as dataset. Received: {type(self.dataset).__name__}"
            )
        return self._stack(self._next_indices())

    @property
    def stackable(self) -> bool:
        """Whether `next_stacked()` works: the dataset is gathered by index."""
        return self._stack is not None
