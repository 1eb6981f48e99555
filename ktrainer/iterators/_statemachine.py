"""The epoch bookkeeping shared by the index-based iterators.

One pure function computes the next batch's indices and the state after
it, so `SerialIterator` and `MultithreadIterator` (which computes it one
batch ahead) agree exactly, including batches that span two epochs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

OrderSamplerLike = Callable[[np.ndarray, int], np.ndarray]


class IteratorState(NamedTuple):
    current_position: int
    epoch: int
    is_new_epoch: bool
    order: np.ndarray | None


def _span(order: np.ndarray | None, start: int, stop: int) -> np.ndarray:
    if order is None:
        return np.arange(start, stop, dtype=np.intp)
    return order[start:stop]


def check_order(order: np.ndarray, dataset_len: int, repeat: bool) -> None:
    """Raises if `order` cannot be an epoch's order over `dataset_len` examples."""
    if order.ndim != 1 or (order.size and order.dtype.kind not in "iu"):
        raise TypeError(
            "order_sampler must return a 1-D array of integer indices. "
            f"Received: an array of shape {order.shape} and dtype {order.dtype}"
        )
    if repeat and order.size == 0:
        raise ValueError(
            "order_sampler must return a non-empty order when repeat=True, or "
            "the epoch never ends. Received: an order of length 0"
        )
    if order.size and (order.min() < 0 or order.max() >= dataset_len):
        raise ValueError(
            f"order_sampler must return indices in [0, {dataset_len}) for a "
            f"dataset of length {dataset_len}. Received: indices from "
            f"{order.min()} to {order.max()}"
        )


def _next_order(
    order_sampler: OrderSamplerLike,
    order: np.ndarray,
    position: int,
    dataset_len: int,
) -> np.ndarray:
    new_order = np.asarray(order_sampler(order, position))
    # As in Chainer, the first order sets the epoch's length (it may differ
    # from the dataset's); later epochs keep it, so `epoch_detail` and a
    # resumed order keep their meaning.
    if len(new_order) != len(order):
        raise ValueError(
            "order_sampler must return an order as long as the previous one "
            f"({len(order)}). Received: an order of length {len(new_order)}"
        )
    check_order(new_order, dataset_len, repeat=False)
    return new_order


def advance(
    state: IteratorState,
    batch_size: int,
    repeat: bool,
    order_sampler: OrderSamplerLike | None,
    dataset_len: int,
) -> tuple[IteratorState, np.ndarray | None]:
    """Returns the state after the next batch and that batch's indices.

    The indices are `None` once a non-repeating iterator has finished its
    epoch. When the batch reaches the end of the order, the sampler draws
    the next epoch's order; a repeating iterator fills the rest of the
    batch from its head. A non-repeating one ends the batch there.
    """
    position, epoch, _, order = state
    if not repeat and epoch > 0:
        return state, None
    size = dataset_len if order is None else len(order)
    end = position + batch_size
    if not repeat:
        end = min(end, size)
    pieces = []
    is_new_epoch = False
    while end >= size:
        pieces.append(_span(order, position, size))
        if order is not None:
            order = _next_order(order_sampler, order, position, dataset_len)
        position = 0
        epoch += 1
        is_new_epoch = True
        if not repeat:
            end = 0
            break  # one pass, even over an empty dataset
        end -= size
    pieces.append(_span(order, position, end))
    # concatenate copies, so a batch never views the order array, which a
    # deserializer overwrites in place.
    indices = np.concatenate(pieces)
    return IteratorState(end, epoch, is_new_epoch, order), indices
