"""Dataset iterators and order samplers (`chainer.iterators`)."""

from ktrainer.iterators._order_samplers import OrderSampler, ShuffleOrderSampler
from ktrainer.iterators.multithread_iterator import MultithreadIterator
from ktrainer.iterators.serial_iterator import SerialIterator

__all__ = [
    "MultithreadIterator",
    "OrderSampler",
    "SerialIterator",
    "ShuffleOrderSampler",
]
