"""Datasets, the iterator base class and converters (`chainer.dataset`)."""

from ktrainer.dataset.convert import concat_examples, to_device
from ktrainer.dataset.data_source_iterator import DataSourceIterator, as_iterator
from ktrainer.dataset.iterator import Iterator
from ktrainer.dataset.tuple_dataset import TupleDataset

__all__ = [
    "DataSourceIterator",
    "Iterator",
    "TupleDataset",
    "as_iterator",
    "concat_examples",
    "to_device",
]
