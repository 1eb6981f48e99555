"""Tests for ktrainer.serializers.hdf5: values, paths, files and failures."""

from __future__ import annotations

import os
import re

import h5py
import keras
import numpy as np
import pytest

from ktrainer.serializers import (
    Deserializer,
    HDF5Deserializer,
    HDF5Serializer,
    Serializer,
    load_hdf5,
    save_hdf5,
)
from ktrainer.serializers._checksum import CHECKSUMS_NAME as CHECKSUMS


class State:
    """A Chainer-style object: every attribute goes through `serialize`."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def serialize(self, serializer):
        for name in sorted(self.__dict__):
            setattr(self, name, serializer(name, getattr(self, name)))


class Nested:
    def __init__(self, inner, count=0):
        self.inner = inner
        self.count = count

    def serialize(self, serializer):
        self.inner.serialize(serializer["inner"])
        self.count = serializer("count", self.count)


# (id, saved value, value passed when loading, expected loaded value)
ROUND_TRIPS = [
    ("int", 7, 0, 7),
    ("float", 2.5, 0.0, 2.5),
    ("bool", True, False, True),
    ("negative_int", -3, 0, -3),
    ("str", "héllo wörld", "", "héllo wörld"),
    ("empty_str", "", "x", ""),
    ("none", None, 5, None),
    ("none_into_none", None, None, None),
    ("numpy_scalar", np.float32(1.5), np.float32(0), np.float32(1.5)),
    ("int_into_float", 3, 0.0, 3.0),
    (
        "array_into_none",
        np.arange(6.0).reshape(2, 3),
        None,
        np.arange(6.0).reshape(2, 3),
    ),
    ("str_array", np.array(["a", "bc"]), None, np.array(["a", "bc"])),
    ("list", [1, 2, 3], [0, 0, 0], [1, 2, 3]),
]


@pytest.mark.parametrize(
    ("saved", "target", "expected"),
    [row[1:] for row in ROUND_TRIPS],
    ids=[row[0] for row in ROUND_TRIPS],
)
def test_round_trip_of_values(tmp_path, saved, target, expected):
    path = tmp_path / "state.h5"
    save_hdf5(path, State(value=saved))
    state = State(value=target)
    load_hdf5(path, state)
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(state.value, expected)
        assert state.value.dtype == expected.dtype
    else:
        assert state.value == expected
        assert type(state.value) is type(expected)


def test_array_is_filled_in_place(tmp_path):
    path = tmp_path / "state.h5"
    save_hdf5(path, State(value=np.arange(4, dtype="int32")))
    target = np.zeros(4, dtype="int32")
    state = State(value=target)
    load_hdf5(path, state)
    assert state.value is target
    np.testing.assert_array_equal(target, [0, 1, 2, 3])


def test_tensor_is_saved_and_loaded_as_tensor(tmp_path):
    path = tmp_path / "state.h5"
    save_hdf5(path, State(value=keras.ops.arange(3, dtype="float32")))
    state = State(value=keras.ops.zeros((3,), dtype="float32"))
    load_hdf5(path, state)
    assert keras.ops.is_tensor(state.value)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(state.value), [0, 1, 2])


def test_none_and_strings_are_plain_hdf5(tmp_path):
    path = tmp_path / "state.h5"
    save_hdf5(path, State(nothing=None, text="abc", number=4))
    with h5py.File(path, "r") as f:
        assert f["nothing"].shape is None  # an empty dataset, not a pickle
        assert h5py.check_string_dtype(f["text"].dtype).encoding == "utf-8"
        assert f["text"].asstr()[()] == "abc"
        assert f["number"][()] == 4
        assert all(f[k].dtype.kind != "O" or k in ("text", CHECKSUMS) for k in f)


def test_nested_groups_and_path(tmp_path):
    path = tmp_path / "state.h5"
    save_hdf5(path, Nested(State(a=1, b=np.ones(2)), count=5))
    with h5py.File(path, "r") as f:
        assert sorted(f["inner"]) == ["a", "b"]
    inner = State(a=0, b=np.zeros(2))
    load_hdf5(path, inner, path="inner")
    assert inner.a == 1
    np.testing.assert_array_equal(inner.b, [1, 1])
    other = State(a=0, b=np.zeros(2))
    load_hdf5(path, other, path="/inner/")
    assert other.a == 1


def test_serializer_classes_work_on_open_groups(tmp_path):
    path = tmp_path / "state.h5"
    with h5py.File(path, "w") as f:
        serializer = HDF5Serializer(f.create_group("sub"))
        assert isinstance(serializer, Serializer)
        assert serializer("x", 3) == 3
        serializer["child"]("y", np.ones(2))
        serializer("deep/er/z", 1.5)
    with h5py.File(path, "r") as f:
        deserializer = HDF5Deserializer(f, path="sub")
        assert isinstance(deserializer, Deserializer)
        assert deserializer("x", 0) == 3
        np.testing.assert_array_equal(deserializer["child"]("y", None), [1, 1])
        assert deserializer("deep/er/z", 0.0) == 1.5
        with pytest.raises(KeyError, match="sub/missing"):
            deserializer("missing", 1)
        assert HDF5Deserializer(f, "sub", strict=False)("missing", 1) == 1
        assert HDF5Deserializer(f, "nowhere", strict=False)["a"]("b", 2) == 2


def test_missing_entry_strict_and_not_strict(tmp_path):
    path = tmp_path / "state.h5"
    save_hdf5(path, State(a=1))
    state = State(a=0, b=2)
    with pytest.raises(ValueError, match="'b': missing from the file") as info:
        load_hdf5(path, state)
    assert "nothing was loaded" in str(info.value)
    assert (state.a, state.b) == (0, 2)
    load_hdf5(path, state, strict=False)
    assert (state.a, state.b) == (1, 2)


def test_failed_load_changes_no_attribute(tmp_path):
    path = tmp_path / "state.h5"
    save_hdf5(path, State(a=1, b=np.ones(3), c="text"))
    target = np.zeros(4)
    state = State(a=0, b=target, c="old")
    with pytest.raises(ValueError, match=r"'b': expected shape \(4,\) float64"):
        load_hdf5(path, state)
    assert (state.a, state.c) == (0, "old")
    assert state.b is target
    np.testing.assert_array_equal(target, np.zeros(4))


def test_key_error_can_be_caught_for_old_files(tmp_path):
    # Chainer's serialize methods accept old snapshots by catching KeyError.
    class Compat:
        def __init__(self):
            self.a, self.b = 0, 0

        def serialize(self, serializer):
            self.a = serializer("a", self.a)
            try:
                self.b = serializer("b", self.b)
            except KeyError:
                self.b = -1

    path = tmp_path / "state.h5"
    save_hdf5(path, State(a=3))
    obj = Compat()
    load_hdf5(path, obj)
    assert (obj.a, obj.b) == (3, -1)


BAD_TYPES = [
    ("str_into_int", "abc", 0, "of type int, found the string 'abc'"),
    ("float_into_int", 1.5, 0, "of type int, found shape () float64"),
    ("int_into_bool", 1, False, "of type bool, found shape () int64"),
    ("array_into_str", np.ones(2), "", "of type str, found shape (2,) float64"),
    ("array_into_int", np.ones(2, "int64"), 0, "of type int, found shape (2,) int64"),
]


@pytest.mark.parametrize(
    ("saved", "target", "match"),
    [row[1:] for row in BAD_TYPES],
    ids=[row[0] for row in BAD_TYPES],
)
def test_incompatible_values_are_rejected(tmp_path, saved, target, match):
    path = tmp_path / "state.h5"
    save_hdf5(path, State(value=saved))
    state = State(value=target)
    with pytest.raises(ValueError, match=re.escape(match)):
        load_hdf5(path, state)
    assert state.value == target


@pytest.mark.parametrize(
    ("compression", "filter_", "level"),
    [(0, None, None), (4, "gzip", 4), (9, "gzip", 9)],
    ids=["none", "gzip4", "gzip9"],
)
def test_compression_option(tmp_path, compression, filter_, level):
    path = tmp_path / "state.h5"
    save_hdf5(path, State(big=np.zeros(1000), small=1.0), compression=compression)
    with h5py.File(path, "r") as f:
        assert f["big"].compression == filter_
        assert f["big"].compression_opts == level
        assert f["small"].compression is None  # scalars are never filtered
    state = State(big=np.ones(1000), small=0.0)
    load_hdf5(path, state)
    np.testing.assert_array_equal(state.big, np.zeros(1000))


@pytest.mark.parametrize(
    ("compression", "error"),
    [(10, ValueError), (-1, ValueError), (True, TypeError), ("gzip", TypeError)],
    ids=["too_high", "negative", "bool", "str"],
)
def test_bad_compression_is_rejected(tmp_path, compression, error):
    with pytest.raises(error, match="compression must be an int from 0"):
        save_hdf5(tmp_path / "x.h5", State(a=1), compression=compression)
    assert os.listdir(tmp_path) == []


def test_dict_is_saved_as_flat_entries(tmp_path):
    path = tmp_path / "state.h5"
    save_hdf5(path, {"a/b": np.ones(2), "c": 3})
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["a/b"][()], [1, 1])
        assert f["c"][()] == 3


def test_duplicate_key_is_an_error(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        serializer = HDF5Serializer(f)
        serializer("a", 1)
        with pytest.raises(ValueError, match="key must be new in its group"):
            serializer("a", 2)


def test_object_values_are_refused(tmp_path):
    with pytest.raises(TypeError, match="value of entry 'value' must be"):
        save_hdf5(tmp_path / "x.h5", State(value={"not": "storable"}))
    assert os.listdir(tmp_path) == []


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(TypeError, match=r"group must be an h5py\.File"):
        HDF5Serializer({})
    with pytest.raises(TypeError, match=r"group must be an h5py\.File"):
        HDF5Deserializer("file.h5")
    with pytest.raises(TypeError, match="filename must be a str"):
        save_hdf5(3, State())
    with pytest.raises(TypeError, match="path must be a str"):
        load_hdf5(_saved(tmp_path), State(a=0), path=None)


def _saved(tmp_path, **values):
    path = tmp_path / "state.h5"
    save_hdf5(path, State(a=np.arange(10000.0), b=1, **values))
    return path


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        load_hdf5(missing, State(a=0))


def test_truncated_file_is_a_clear_error_and_loads_nothing(tmp_path):
    path = _saved(tmp_path)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    target = np.zeros(10000)
    state = State(a=target, b=0)
    with pytest.raises(ValueError, match="is not a readable") as info:
        load_hdf5(path, state)
    assert "state.h5" in str(info.value)
    assert state.b == 0
    assert not target.any()


def test_unreadable_dataset_is_reported_and_loads_nothing(tmp_path, monkeypatch):
    # A file that opens but whose data cannot be read (e.g. a bad sector).
    path = _saved(tmp_path)
    original = HDF5Deserializer._read

    def failing_read(self, full_key):
        if full_key == "b":
            raise OSError("Can't synchronously read data")
        return original(self, full_key)

    monkeypatch.setattr(HDF5Deserializer, "_read", failing_read)
    target = np.zeros(10000)
    state = State(a=target, b=0)
    with pytest.raises(ValueError, match="is not a readable HDF5 snapshot") as info:
        load_hdf5(path, state)
    assert "'b': cannot be read (OSError" in str(info.value)
    assert state.b == 0
    assert not target.any()


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.h5"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match=r"garbage\.h5.* is not a readable HDF5"):
        load_hdf5(path, State(a=0))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.h5"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="is not a readable HDF5"):
        load_hdf5(path, State(a=0))


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    calls = []
    original = h5py.Group.create_dataset

    def failing(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the save is cut off half-way
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(KeyboardInterrupt):
        save_hdf5(path, State(a=np.zeros(10000), b=2, c=3))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["state.h5"]  # no temporary file left
    state = State(a=np.zeros(10000), b=0)
    load_hdf5(path, state)
    assert state.b == 1
    np.testing.assert_array_equal(state.a, np.arange(10000.0))


def test_save_replaces_the_previous_file(tmp_path):
    path = _saved(tmp_path)
    save_hdf5(path, State(b=5))
    state = State(b=0)
    load_hdf5(path, state)
    assert state.b == 5
    with h5py.File(path, "r") as f:
        assert sorted(f) == [CHECKSUMS, "b"]


def test_text_is_stored_as_fixed_length_utf8_and_round_trips(tmp_path):
    # Fixed-length strings keep text out of HDF5's unchecksummed global heap.
    import h5py

    from ktrainer.serializers import load_hdf5, save_hdf5

    values = {"a": "", "b": "héllo ☃", "c": np.array([["x", "yz"], ["é", ""]])}
    save_hdf5(tmp_path / "t.h5", values)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        for key in ("a", "b", "c", ".ktrainer_checksums"):
            info = h5py.check_string_dtype(f[key].dtype)
            assert info.encoding == "utf-8", key
            assert info.length is not None, key

    class Target:
        a, b, c = "?", "?", np.array([["??", "??"], ["??", "??"]])

        def serialize(self, serializer):
            for key in "abc":
                setattr(self, key, serializer(key, getattr(self, key)))

    target = Target()
    load_hdf5(tmp_path / "t.h5", target)
    assert target.a == ""
    assert target.b == "héllo ☃"
    np.testing.assert_array_equal(target.c, values["c"])


def test_text_with_a_nul_is_refused_naming_the_entry(tmp_path):
    from ktrainer.serializers import save_hdf5

    with pytest.raises(ValueError, match=r"'name'.*NUL"):
        save_hdf5(tmp_path / "t.h5", {"name": "a\0b"})
    assert list(tmp_path.iterdir()) == []
