"""The base class of dataset iterators."""

from __future__ import annotations

from typing import Any


class Iterator:
    """Base class of dataset iterators: an endless (or one-pass) batch source.

    An iterator turns a dataset into a stream of mini-batches. Each call of
    `next(iterator)` returns one batch, usually a list of examples, that a
    converter such as `concat_examples` turns into arrays. Updaters and
    evaluators read the epoch bookkeeping below, and `Trainer` snapshots
    include the iterator's `serialize` state, so a resumed run continues
    with the very next batch.

    Concrete iterators provide these attributes (as in Chainer):

    - `batch_size`: the number of examples in each batch.
    - `epoch`: the number of completed passes over the dataset.
    - `epoch_detail`: `epoch` plus the fraction of the current pass done.
    - `previous_epoch_detail`: `epoch_detail` before the last batch, or
      `None` before the first batch.
    - `is_new_epoch`: whether the last batch completed a pass.
    - `repeat`: whether the iterator loops over the dataset forever
      (otherwise it raises `StopIteration` after one pass).

    An iterator that holds resources (threads, processes) releases them in
    `finalize`; using it as a context manager calls `finalize` on exit.
    """

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        """Returns the next batch; raises `StopIteration` at the end."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement __next__ to return a batch."
        )

    def next(self) -> Any:
        """Returns the next batch (an alias of `__next__`)."""
        # Chainer compatibility
        return self.__next__()

    def finalize(self) -> None:
        """Releases the resources the iterator holds; a no-op by default."""

    def __enter__(self) -> Iterator:
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.finalize()

    def serialize(self, serializer) -> None:
        """Saves or loads the iterator's state; a no-op by default.

        Args:
            serializer: a `ktrainer.serializers` serializer or deserializer.
        """
