"""The public names of ktrainer.serializers."""

from __future__ import annotations

import ktrainer.serializers as serializers

EXPECTED = [
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


def test_all_is_sorted_and_complete():
    assert serializers.__all__ == EXPECTED
    for name in EXPECTED:
        assert getattr(serializers, name).__module__.startswith("ktrainer.serializers")


def test_class_hierarchy():
    assert issubclass(serializers.HDF5Serializer, serializers.Serializer)
    assert issubclass(serializers.DictionarySerializer, serializers.Serializer)
    assert issubclass(serializers.HDF5Deserializer, serializers.Deserializer)
    assert issubclass(serializers.NpzDeserializer, serializers.Deserializer)
    assert not issubclass(serializers.HDF5Deserializer, serializers.Serializer)
