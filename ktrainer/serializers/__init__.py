"""Saving and loading state: Chainer's serializers for Keras objects.

An object takes part by implementing `serialize(serializer)`; Keras
models, layers and optimizers take part through their variables. HDF5 is
the snapshot format (`save_hdf5`, `load_hdf5`); NPZ is also supported
(`save_npz`, `load_npz`). Saves are atomic, loads are all or nothing, and
nothing is ever pickled. Every entry `save_hdf5` writes carries a checksum
that every load verifies (an NPZ member carries its zip CRC-32), so a
damaged file is an error naming the entry, never different values.
"""

from ktrainer.serializers._base import Deserializer, Serializer
from ktrainer.serializers._keras_state import serialize_object
from ktrainer.serializers.dictionary import DictionarySerializer
from ktrainer.serializers.hdf5 import (
    HDF5Deserializer,
    HDF5Serializer,
    load_hdf5,
    save_hdf5,
)
from ktrainer.serializers.npz import NpzDeserializer, load_npz, save_npz

__all__ = [
    "Deserializer",
    "DictionarySerializer",
    "HDF5Deserializer",
    "HDF5Serializer",
    "NpzDeserializer",
    "Serializer",
    "load_hdf5",
    "load_npz",
    "save_hdf5",
    "save_npz",
    "serialize_object",
]
