"""Datasets, the iterator base class and converters (`chainer.dataset`)."""

from ktrainer.dataset.convert import concat_examples, to_device
from ktrainer.dataset.iterator import Iterator
from ktrainer.dataset.tuple_dataset import TupleDataset

__all__ = [
    "Iterator",
    "TupleDataset",
    "concat_examples",
    "to_device",
]
