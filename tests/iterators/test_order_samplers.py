"""Order samplers: the orders they draw and their saved random state."""

from __future__ import annotations

import numpy as np
import pytest
from _iterator_memory_serializer import (
    CheckingDeserializer,
    MemoryDeserializer,
    MemorySerializer,
)

from ktrainer.iterators import OrderSampler, ShuffleOrderSampler

# name -> a factory of a seeded random state
RANDOM_STATES = {
    "random-state": np.random.RandomState,
    "pcg64": np.random.default_rng,
    "pcg64dxsm": lambda seed: np.random.Generator(np.random.PCG64DXSM(seed)),
    "philox": lambda seed: np.random.Generator(np.random.Philox(seed)),
    "mt19937": lambda seed: np.random.Generator(np.random.MT19937(seed)),
    "sfc64": lambda seed: np.random.Generator(np.random.SFC64(seed)),
}


def test_shuffle_draws_a_permutation_of_the_order_length():
    sampler = ShuffleOrderSampler(np.random.RandomState(0))
    order = sampler(np.arange(10) * 3, 4)
    assert sorted(order.tolist()) == list(range(10))
    np.testing.assert_array_equal(order, np.random.RandomState(0).permutation(10))


@pytest.mark.parametrize("make", list(RANDOM_STATES.values()), ids=list(RANDOM_STATES))
def test_random_state_round_trip_continues_the_same_orders(make):
    sampler = ShuffleOrderSampler(make(1))
    sampler(np.arange(8), 0)
    saved = MemorySerializer()
    sampler.serialize(saved)
    expected = [sampler(np.arange(8), 8).tolist() for _ in range(3)]

    fresh = ShuffleOrderSampler(make(2))
    fresh.serialize(CheckingDeserializer(saved.target))
    fresh.serialize(MemoryDeserializer(saved.target))
    assert [fresh(np.arange(8), 8).tolist() for _ in range(3)] == expected
    for key, value in saved.target.items():
        assert isinstance(value, (np.ndarray, float)), key
        if isinstance(value, np.ndarray):
            assert value.dtype.kind in "uif", key


def test_random_state_keeps_a_cached_gaussian():
    random = np.random.RandomState(0)
    random.standard_normal()  # leaves the second gaussian of a pair cached
    sampler = ShuffleOrderSampler(random)
    saved = MemorySerializer()
    sampler.serialize(saved)
    restored = np.random.RandomState(1)
    ShuffleOrderSampler(restored).serialize(MemoryDeserializer(saved.target))
    assert restored.standard_normal() == random.standard_normal()


def test_checking_deserializer_leaves_the_state_alone():
    sampler = ShuffleOrderSampler(np.random.RandomState(3))
    other = MemorySerializer()
    ShuffleOrderSampler(np.random.RandomState(4)).serialize(other)
    sampler.serialize(CheckingDeserializer(other.target))
    np.testing.assert_array_equal(
        sampler(np.arange(6), 0), np.random.RandomState(3).permutation(6)
    )


def test_default_random_state_follows_numpy_seed():
    np.random.seed(7)
    first = ShuffleOrderSampler()(np.arange(30), 0)
    np.random.seed(7)
    second = ShuffleOrderSampler()(np.arange(30), 0)
    np.testing.assert_array_equal(first, second)


def test_unknown_random_source_is_used_but_not_saved():
    class Reverse:
        def permutation(self, n):
            return np.arange(n)[::-1]

    sampler = ShuffleOrderSampler(Reverse())
    assert sampler(np.arange(3), 0).tolist() == [2, 1, 0]
    saved = MemorySerializer()
    sampler.serialize(saved)
    assert saved.target == {}


def test_bad_random_state_is_named():
    with pytest.raises(TypeError, match="random_state"):
        ShuffleOrderSampler(random_state=42)


def test_order_sampler_base_requires_call():
    with pytest.raises(NotImplementedError, match="__call__"):
        OrderSampler()(np.arange(3), 0)
