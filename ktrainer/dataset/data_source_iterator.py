"""Keras data sources as ktrainer iterators: `PyDataset`, `tf.data`, `DataLoader`.

`model.fit` accepts batch sources that ktrainer's iterators do not: a
`keras.utils.PyDataset`, a `tf.data.Dataset`, a torch `DataLoader` or a
tuple of numpy arrays. `as_iterator` turns each into an iterator with
Chainer's epoch bookkeeping, so `StandardUpdater` and `Evaluator` take
them as they are.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from collections.abc import Iterator as PyIterator
from typing import Any

import keras
import numpy as np

from ktrainer import _backend
from ktrainer.dataset._example_batch import ExampleBatch
from ktrainer.dataset.iterator import Iterator


class DataSourceIterator(Iterator):
    """Iterates over a Keras data source that already yields whole batches.

    Each `next(iterator)` returns the source's next batch as an
    `ExampleBatch`: a list of examples that also holds the batch's arrays
    as the source made them, which `concat_examples` (the updater's default
    converter) returns without restacking. Tensors (torch, tf) become numpy
    arrays.

    One epoch is one pass over the source's batches, so `epoch_detail` is
    `epoch + i / n` after the `i`-th of `n` batches of the epoch. Sources:

    - a `keras.utils.PyDataset` (anything with `__getitem__` and
      `num_batches` or `len`): batch `i` of the epoch is `source[order[i]]`,
      with `order` a permutation of the batch indices when `shuffle`
      (drawn by a `ShuffleOrderSampler` seeded from numpy's global random
      state); the
      source's `on_epoch_begin`/`on_epoch_end` are called as `fit` calls
      them. Batches are read in the calling thread (the source's
      `workers` are not used). `serialize` keeps the epoch, the position,
      the order and the sampler's random state, so a resumed run reads the
      same batches as an uninterrupted one.
    - a streaming source, a finite `tf.data.Dataset` (read with
      `as_numpy_iterator()`) or a torch `DataLoader`: each epoch iterates
      the source afresh; the source shuffles by itself. `serialize` keeps
      the epoch and the position only: a resume iterates the epoch from
      its start and skips the batches already seen, which are the same
      batches only if the source does not shuffle (a warning says so).

    Use `as_iterator` rather than this class directly.

    Args:
        source: the `PyDataset`, `tf.data.Dataset` or `DataLoader`.
        shuffle: shuffle the batch order of a `PyDataset` each epoch;
            must be `False` for streaming sources. Defaults to `False`.
        repeat: loop over the source forever; otherwise raise
            `StopIteration` after one pass. Defaults to `True`.
    """

    def __init__(self, source: Any, shuffle: bool = False, repeat: bool = True) -> None:
        self.source = source
        self._indexed = _is_py_dataset(source)
        if not self._indexed and shuffle:
            raise ValueError(
                "shuffle must be False for a tf.data.Dataset or a DataLoader, "
                "which shuffle by themselves. Received: shuffle=True"
            )
        self._num_batches = _num_batches(source)
        if self._num_batches == 0:
            raise ValueError(
                "source must yield at least one batch per epoch. Received: a "
                f"{type(source).__name__} of 0 batches"
            )
        self._shuffle = bool(shuffle)
        self._sampler = None
        if self._indexed and self._shuffle:
            from ktrainer.iterators._order_samplers import ShuffleOrderSampler

            self._sampler = ShuffleOrderSampler()
        self._repeat = bool(repeat)
        self._stream: PyIterator | None = None
        self.reset()

    # -- Chainer's bookkeeping ------------------------------------------------

    def reset(self) -> None:
        """Restarts from the first batch of epoch 0."""
        self.epoch = 0
        self.current_position = 0
        self.is_new_epoch = False
        self._order = self._new_order()
        # -1 stands for None: not every serializer can store None.
        self._previous_epoch_detail = -1.0
        self._stream = None
        self._started = False

    @property
    def repeat(self) -> bool:
        return self._repeat

    @property
    def batch_size(self) -> None:
        """`None`: the source decides the size of each batch."""
        return None

    @property
    def epoch_detail(self) -> float:
        return self.epoch + self.current_position / self._num_batches

    @property
    def previous_epoch_detail(self) -> float | None:
        if self._previous_epoch_detail < 0:
            return None
        return self._previous_epoch_detail

    def __len__(self) -> int:
        """The number of batches per epoch."""
        return self._num_batches

    def _new_order(self) -> np.ndarray | None:
        if self._sampler is None:
            return None
        return self._sampler(np.arange(self._num_batches), 0)

    # -- batches ------------------------------------------------------------

    def __next__(self) -> ExampleBatch:
        if not self._repeat and self.epoch > 0:
            raise StopIteration
        position = self.current_position
        if position == 0 and not self._started:
            self._epoch_hook("on_epoch_begin")
        self._started = True
        batch = self._read(position)
        self._previous_epoch_detail = self.epoch_detail
        position += 1
        if position >= self._num_batches:
            self._epoch_hook("on_epoch_end")
            self.epoch += 1
            self.is_new_epoch = True
            self.current_position = 0
            self._order = self._new_order()
            self._stream = None
            self._started = False
        else:
            self.is_new_epoch = False
            self.current_position = position
        return _as_example_batch(batch)

    def _read(self, position: int) -> Any:
        if self._indexed:
            index = position if self._order is None else int(self._order[position])
            return self.source[index]
        if self._stream is None:
            self._stream = self._open_stream(position)
        try:
            return next(self._stream)
        except StopIteration:
            raise RuntimeError(
                f"source ended after {position} batches of an epoch that should "
                f"have {self._num_batches}; a source must yield the same number "
                f"of batches each epoch. Received: a {type(self.source).__name__}"
            ) from None

    def _open_stream(self, skip: int) -> PyIterator:
        read = getattr(self.source, "as_numpy_iterator", None)
        stream = iter(read() if read is not None else self.source)
        if skip:
            warnings.warn(
                f"resuming a {type(self.source).__name__} mid-epoch skips the "
                f"first {skip} batches of a fresh pass; if the source shuffles, "
                "these are not the batches the interrupted run read.",
                stacklevel=3,
            )
            for _ in range(skip):
                next(stream)
        return stream

    def _epoch_hook(self, name: str) -> None:
        if self._indexed:
            hook = getattr(self.source, name, None)
            if hook is not None:
                hook()

    def serialize(self, serializer) -> None:
        """Saves or loads the epoch, the position (and a `PyDataset`'s order)."""
        self.current_position = serializer("current_position", self.current_position)
        self.epoch = serializer("epoch", self.epoch)
        self.is_new_epoch = serializer("is_new_epoch", self.is_new_epoch)
        if self._order is not None:
            self._order = serializer("order", self._order)
        self._previous_epoch_detail = serializer(
            "previous_epoch_detail", self._previous_epoch_detail
        )
        if self._sampler is not None:
            self._sampler.serialize(serializer["order_sampler"])
        self._stream = None


def as_iterator(
    source: Any,
    batch_size: int | None = None,
    shuffle: bool | None = None,
    repeat: bool = True,
) -> Any:
    """Returns a ktrainer iterator over a Keras data source.

    Lets `StandardUpdater` and `Evaluator` take what `model.fit` takes:

    - a ktrainer iterator (anything with `__next__` and `epoch_detail`):
      returned unchanged;
    - a tuple `(x,)`, `(x, y)` or `(x, y, sample_weight)` of numpy arrays:
      a `SerialIterator` over `TupleDataset(*source)` with `batch_size`;
    - a `keras.utils.PyDataset`, a finite `tf.data.Dataset` or a torch
      `DataLoader`: a `DataSourceIterator`, one of the source's batches
      per `next`.

    Anything else is returned unchanged, for the caller's own checks.

    Args:
        source: the data source.
        batch_size: examples per batch for a tuple of arrays (required
            there); must be `None` for sources that batch by themselves.
            Defaults to `None`.
        shuffle: shuffle each epoch: the examples of a tuple of arrays,
            the batch order of a `PyDataset`; must not be `True` for a
            `tf.data.Dataset` or a `DataLoader`, which shuffle by
            themselves. Defaults to `None` (`True` for arrays and
            `PyDataset`, as in `model.fit`; `False` otherwise).
        repeat: loop forever (for training) or stop after one pass (for
            evaluation). Defaults to `True`.

    Returns:
        A ktrainer iterator.

    Raises:
        ValueError: if `batch_size` is missing for arrays or given for a
            batching source, if `shuffle=True` for a streaming source, or
            if a `tf.data.Dataset` is infinite or of unknown length.
    """
    if _is_ktrainer_iterator(source):
        return source
    if _is_array_tuple(source):
        if batch_size is None:
            raise ValueError(
                "batch_size is required for a tuple of arrays; wrap them "
                "with ktrainer.dataset.as_iterator((x, y), batch_size=N) "
                "before passing them to an updater or an evaluator. "
                "Received: batch_size=None"
            )
        from ktrainer.dataset.tuple_dataset import TupleDataset
        from ktrainer.iterators.serial_iterator import SerialIterator

        iterator = SerialIterator(
            TupleDataset(*source),
            batch_size,
            repeat=repeat,
            shuffle=True if shuffle is None else shuffle,
        )
        # Lets an Evaluator given this iterator read one pass of the arrays.
        iterator._from_as_iterator = True
        return iterator
    if _is_py_dataset(source) or _is_streaming(source):
        if batch_size is not None:
            raise ValueError(
                f"batch_size must be None for a {type(source).__name__}, which "
                f"makes its own batches. Received: batch_size={batch_size!r}"
            )
        if shuffle is None:
            shuffle = _is_py_dataset(source)
        return DataSourceIterator(source, shuffle=shuffle, repeat=repeat)
    return source


def one_pass_iterator(source: Any, batch_size: int = 32) -> Any:
    """Returns an iterator that reads `source` once, for an `Evaluator`.

    An `Evaluator` reads its validation data through this function, so it
    takes what `model.evaluate` takes:

    - a tuple `(x,)`, `(x, y)` or `(x, y, sample_weight)` of numpy arrays,
      or a dataset (a `TupleDataset`, a numpy array, any object with `len`
      and indexing other than a list or a tuple): a `SerialIterator` with
      `batch_size`, `repeat=False` and no shuffling;
    - a `keras.utils.PyDataset`, a `tf.data.Dataset` or a torch
      `DataLoader`: one pass over its batches, in order;
    - an iterator made by `as_iterator`, which repeats by default: one pass
      over the same source instead.

    Anything else, a ktrainer iterator you built yourself included, is
    returned unchanged (the `Evaluator` refuses one that repeats). A list
    or a tuple that is not of arrays stays an iterable of batches.

    Args:
        source: the validation data.
        batch_size: examples per batch for arrays and datasets. Defaults to
            `32`, `model.evaluate`'s default.

    Returns:
        An iterator, or `source` itself.
    """
    from ktrainer.iterators.serial_iterator import SerialIterator

    if isinstance(source, DataSourceIterator):
        if not source.repeat:
            return source
        return DataSourceIterator(source.source, shuffle=False, repeat=False)
    if _is_ktrainer_iterator(source):
        if getattr(source, "_from_as_iterator", False) and source.repeat:
            return SerialIterator(
                source.dataset, source.batch_size, repeat=False, shuffle=False
            )
        return source
    if _is_array_tuple(source):
        return as_iterator(source, batch_size, shuffle=False, repeat=False)
    if _is_py_dataset(source) or _is_streaming(source):
        return as_iterator(source, shuffle=False, repeat=False)
    if _is_dataset(source):
        return SerialIterator(source, batch_size, repeat=False, shuffle=False)
    return source


def _is_dataset(source: Any) -> bool:
    kind = type(source)
    return (
        hasattr(kind, "__len__")
        and hasattr(kind, "__getitem__")
        and not isinstance(source, (list, tuple, dict, str, bytes))
        and not callable(getattr(source, "__next__", None))
    )


def _is_ktrainer_iterator(source: Any) -> bool:
    return isinstance(source, Iterator) or (
        callable(getattr(source, "__next__", None)) and hasattr(source, "epoch_detail")
    )


def _is_array_tuple(source: Any) -> bool:
    return (
        isinstance(source, tuple)
        and 1 <= len(source) <= 3
        and all(isinstance(a, np.ndarray) for a in source)
    )


def _is_py_dataset(source: Any) -> bool:
    return isinstance(source, keras.utils.PyDataset)


def _is_tf_dataset(source: Any) -> bool:
    return _backend.is_tf_dataset(source)


def _is_torch_loader(source: Any) -> bool:
    return _backend.is_torch_loader(source)


def _is_streaming(source: Any) -> bool:
    return _is_tf_dataset(source) or _is_torch_loader(source)


def _num_batches(source: Any) -> int:
    if _is_tf_dataset(source):
        cardinality = int(np.asarray(source.cardinality()))
        if cardinality < 0:
            raise ValueError(
                "source must be a finite tf.data.Dataset of known length (one "
                "epoch is one pass over it); call .take(n) or "
                ".apply(tf.data.experimental.assert_cardinality(n)) on an "
                "infinite or unknown-length dataset. Received: cardinality="
                f"{cardinality} ({'infinite' if cardinality == -1 else 'unknown'})"
            )
        return cardinality
    if _is_py_dataset(source):
        count = source.num_batches
        if count is None:
            raise ValueError(
                "source must be a PyDataset with a finite num_batches. "
                "Received: num_batches=None"
            )
        return int(count)
    return len(source)


# -- batches as ExampleBatch --------------------------------------------------


def _to_numpy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        return value.detach().cpu().numpy()
    if keras.ops.is_tensor(value):
        return keras.ops.convert_to_numpy(value)
    numpy = getattr(value, "numpy", None)  # a tf tensor under another backend
    if callable(numpy):
        return numpy()
    return np.asarray(value)


def _map(fn: Callable, tree: Any) -> Any:
    if isinstance(tree, (tuple, list)):
        return tuple(_map(fn, v) for v in tree)
    if isinstance(tree, dict):
        return {k: _map(fn, v) for k, v in tree.items()}
    return fn(tree)


def _leaves(tree: Any) -> list:
    if isinstance(tree, (tuple, list)):
        return [leaf for v in tree for leaf in _leaves(v)]
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in _leaves(v)]
    return [tree]


class _StackedBatch(ExampleBatch):
    """An `ExampleBatch` for any structure of arrays (dicts, nesting)."""

    __slots__ = ()

    def __init__(self, stacked: Any) -> None:
        size = len(_leaves(stacked)[0])
        list.__init__(self, (_map(lambda a, i=i: a[i], stacked) for i in range(size)))
        self._stacked = stacked


def _as_example_batch(batch: Any) -> ExampleBatch:
    """Wraps a source's batch of arrays so `concat_examples` passes it through."""
    if isinstance(batch, list) and not isinstance(batch, ExampleBatch):
        batch = tuple(batch)
    stacked = _map(_to_numpy, batch)
    if isinstance(stacked, np.ndarray) or (
        isinstance(stacked, tuple) and all(isinstance(a, np.ndarray) for a in stacked)
    ):
        return ExampleBatch(stacked)
    return _StackedBatch(stacked)
