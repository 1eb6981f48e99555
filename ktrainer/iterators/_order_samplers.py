"""Order samplers: what decides each epoch's order of examples."""

from __future__ import annotations

from typing import Any

import numpy as np

# Bit generator states hold integers up to 128 bits (PCG64); each is
# stored as this many 32-bit words so every serializer can hold it.
_INT_WORDS = 4


class OrderSampler:
    """Base class of order samplers: they give each epoch's order of indices.

    An iterator calls its sampler with the current order (a 1-D array of
    dataset indices) and its current position when an epoch ends, and
    visits the examples of the next epoch in the returned order. The
    first order (drawn from `arange(len(dataset))` at position 0) may be
    longer or shorter than the dataset, repeat indices or leave some out
    (over- or under-sampling, class balancing): as in Chainer, an epoch
    is one pass over the order, so `epoch_detail`, `is_new_epoch` and the
    end of a `repeat=False` pass follow its length. Later orders must keep
    that length. A sampler with state implements
    `serialize`, so that resuming from a snapshot continues the same
    sequence of orders.
    """

    def __call__(self, current_order: np.ndarray, current_position: int) -> np.ndarray:
        """Returns the next epoch's order of indices."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement __call__ to return an order."
        )


class ShuffleOrderSampler(OrderSampler):
    """Shuffles the examples anew every epoch.

    The iterators use it for `shuffle=True` (and by default). Its random
    state is part of `serialize`, saved as plain numeric arrays and
    scalars, so a resumed run draws the same orders as an uninterrupted
    one.

    Args:
        random_state: a `numpy.random.RandomState` or `numpy.random.Generator`
            that draws the permutations. Defaults to `None`: a private
            `RandomState` seeded from numpy's global random state, so
            `numpy.random.seed` (or `keras.utils.set_random_seed`) makes
            the orders reproducible.
    """

    def __init__(self, random_state: Any = None) -> None:
        if random_state is None:
            random_state = np.random.RandomState(np.random.randint(2**31 - 1))
        elif not callable(getattr(random_state, "permutation", None)):
            raise TypeError(
                "random_state must be a numpy RandomState or Generator (with a "
                f"permutation method). Received: random_state={random_state!r}"
            )
        self._random = random_state

    def __call__(self, current_order: np.ndarray, current_position: int) -> np.ndarray:
        return self._random.permutation(len(current_order))

    def serialize(self, serializer) -> None:
        """Saves or loads the random state (a no-op for other generators)."""
        state = _get_state(self._random)
        if state is not None:
            _set_state(self._random, _serialize_tree(serializer, state))


def _get_state(random: Any) -> dict | None:
    if isinstance(random, np.random.RandomState):
        return random.get_state(legacy=False)
    if isinstance(random, np.random.Generator):
        return random.bit_generator.state
    return None


def _set_state(random: Any, state: dict) -> None:
    if isinstance(random, np.random.RandomState):
        random.set_state(state)
    else:
        random.bit_generator.state = state


def _serialize_tree(serializer, tree: dict) -> dict:
    """Passes each number of a bit generator state through `serializer`."""
    result = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            result[key] = _serialize_tree(serializer[key], value)
        elif isinstance(value, str):
            # The generator's name: fixed by its type, nothing to restore.
            result[key] = value
        elif isinstance(value, np.ndarray):
            result[key] = serializer(key, value.copy())
        elif isinstance(value, float):
            result[key] = float(serializer(key, value))
        else:
            result[key] = _from_words(serializer(key, _to_words(int(value))))
    return result


def _to_words(value: int) -> np.ndarray:
    words = [(value >> (32 * i)) & 0xFFFFFFFF for i in range(_INT_WORDS)]
    return np.array(words, dtype=np.uint32)


def _from_words(words: np.ndarray) -> int:
    return sum(int(word) << (32 * i) for i, word in enumerate(words))
