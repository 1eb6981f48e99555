"""The iterator that loads the next batch on worker threads."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ktrainer.dataset._example_batch import is_stackable
from ktrainer.iterators import _state_capture
from ktrainer.iterators._epoch_iterator import EpochIterator, check_positive_int
from ktrainer.iterators._statemachine import OrderSamplerLike, advance


class MultithreadIterator(EpochIterator):
    """Iterates over a dataset in batches, loading the next one in the background.

    It yields exactly the batches `SerialIterator` would (same order, same
    epoch bookkeeping), but as soon as a batch is returned, the examples
    of the following one are read on a pool of `n_threads` threads, so
    slow datasets (files, decoding, augmentation) load while the model
    trains. A numpy-backed dataset is gathered by one thread with fancy
    indexing.

    The next epoch's order is drawn one batch early. `serialize` first
    rolls the order sampler back to before that draw (for samplers with
    `serialize`, such as `ShuffleOrderSampler`), so a snapshot resumes
    exactly as the uninterrupted run continues.

    Call `finalize()` (or use the iterator as a context manager) to stop
    the threads; `Trainer` does this through the updater.

    Args:
        dataset: the examples: anything with `len` and indexing.
        batch_size: the number of examples per batch.
        repeat: whether to loop over the dataset forever. Defaults to
            `True`.
        shuffle: whether to shuffle each epoch; `None` means `True` unless
            an `order_sampler` is given. Defaults to `None`.
        n_threads: the number of loading threads. Defaults to `1`.
        order_sampler: a callable `(current_order, current_position) ->
            order` that draws each epoch's order; only with `shuffle=None`.
            The order may be longer or shorter than the dataset: an epoch
            is one pass over it (see `OrderSampler`). Defaults to `None`.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        repeat: bool = True,
        shuffle: bool | None = None,
        n_threads: int = 1,
        order_sampler: OrderSamplerLike | None = None,
    ) -> None:
        check_positive_int("n_threads", n_threads)
        self.n_threads = n_threads
        self._executor: ThreadPoolExecutor | None = None
        # (state after the prefetched batch, its futures or None at the end)
        self._pending: tuple[Any, list[Future] | None] | None = None
        self._sampler_record: dict | None = None
        super().__init__(dataset, batch_size, repeat, shuffle, order_sampler)
        self._one_task = is_stackable(dataset)

    def reset(self) -> None:
        self._drop_prefetch()
        super().reset()

    def __next__(self) -> list:
        if self._pending is None:
            self._prefetch()
        batch = self._take()
        self._prefetch()
        return batch

    def finalize(self) -> None:
        """Stops the loading threads; a later `next` starts new ones."""
        self._drop_prefetch()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def serialize(self, serializer) -> None:
        """Saves or loads the state, as of the last batch returned."""
        self._drop_prefetch()
        super().serialize(serializer)

    def _prefetch(self) -> None:
        sampler = self.order_sampler
        self._sampler_record = None

        def sample(order: np.ndarray, position: int) -> np.ndarray:
            # Remember the sampler's state before the early draw (see serialize).
            if self._sampler_record is None and hasattr(sampler, "serialize"):
                self._sampler_record = _state_capture.capture(sampler)
            return sampler(order, position)

        next_state, indices = advance(
            self._state,
            self.batch_size,
            self._repeat,
            None if sampler is None else sample,
            len(self.dataset),
        )
        futures = None if indices is None else self._submit(indices)
        self._pending = (next_state, futures)

    def _submit(self, indices: np.ndarray) -> list[Future]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.n_threads, thread_name_prefix="MultithreadIterator"
            )
        if self._one_task or self.n_threads == 1:
            chunks = [indices]
        else:
            chunks = [c for c in np.array_split(indices, self.n_threads) if len(c)]
        return [
            self._executor.submit(self._gather, chunk) for chunk in chunks or [indices]
        ]

    def _take(self) -> list:
        next_state, futures = self._pending
        self._pending = None
        self._sampler_record = None
        self._previous_epoch_detail = self.epoch_detail
        self._state = next_state
        if futures is None:
            raise StopIteration
        if len(futures) == 1:
            return futures[0].result()
        return [example for future in futures for example in future.result()]

    def _drop_prefetch(self) -> None:
        """Forgets the prefetched batch, undoing its draw of the next order."""
        if self._pending is not None and self._sampler_record is not None:
            _state_capture.restore(self.order_sampler, self._sampler_record)
        self._pending = None
        self._sampler_record = None
