"""Tests for ktrainer.serializers.npz and DictionarySerializer."""

from __future__ import annotations

import io
import os
import zipfile

import keras
import numpy as np
import pytest

from ktrainer.serializers import (
    DictionarySerializer,
    NpzDeserializer,
    load_npz,
    save_npz,
)


class State:
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
    ("str", "héllo wörld", "", "héllo wörld"),
    ("none", None, 5, None),
    ("numpy_scalar", np.int32(4), np.int32(0), np.int32(4)),
    (
        "array_into_none",
        np.arange(6.0).reshape(2, 3),
        None,
        np.arange(6.0).reshape(2, 3),
    ),
    ("str_array", np.array(["a", "bc"]), None, np.array(["a", "bc"])),
]


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "stored"])
@pytest.mark.parametrize(
    ("saved", "target", "expected"),
    [row[1:] for row in ROUND_TRIPS],
    ids=[row[0] for row in ROUND_TRIPS],
)
def test_round_trip_of_values(tmp_path, saved, target, expected, compression):
    path = tmp_path / "state.npz"
    save_npz(path, State(value=saved), compression=compression)
    with np.load(path, allow_pickle=False) as npz:  # readable without pickle
        assert npz.files == ["value"]
    state = State(value=target)
    load_npz(path, state)
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(state.value, expected)
        assert state.value.dtype == expected.dtype
    else:
        assert state.value == expected
        assert type(state.value) is type(expected)


def test_compression_option_sets_the_zip_method(tmp_path):
    for compression, method in [
        (True, zipfile.ZIP_DEFLATED),
        (False, zipfile.ZIP_STORED),
    ]:
        path = tmp_path / f"{compression}.npz"
        save_npz(path, State(a=np.zeros(100)), compression=compression)
        with zipfile.ZipFile(path) as archive:
            assert archive.getinfo("a.npy").compress_type == method


def test_dictionary_serializer_collects_flat_arrays():
    target = {}
    serializer = DictionarySerializer(target, path="root")
    variable = keras.Variable(np.ones(3, "float32"), name="v")
    assert serializer["sub"]("v", variable) is variable
    serializer("none", None)
    serializer("/text", "abc")
    assert sorted(target) == ["root/none", "root/sub/v", "root/text"]
    np.testing.assert_array_equal(target["root/sub/v"], [1, 1, 1])
    assert target["root/text"] == np.asarray("abc")
    # A variable is copied: training on does not change what was collected.
    variable.assign(np.zeros(3, "float32"))
    np.testing.assert_array_equal(target["root/sub/v"], [1, 1, 1])
    assert all(
        isinstance(v, np.ndarray) and not v.dtype.hasobject for v in target.values()
    )


def test_npz_deserializer_reads_a_dict():
    data = {"a/x": np.array(3), "a/y": np.arange(2)}
    deserializer = NpzDeserializer(data)
    assert deserializer["a"]("x", 0) == 3
    assert NpzDeserializer(data, path="a")("x", 0) == 3
    with pytest.raises(KeyError, match="a/z"):
        deserializer["a"]("z", 0)
    assert NpzDeserializer(data, path="a", strict=False)("z", 9) == 9


def test_nested_objects_and_path(tmp_path):
    path = tmp_path / "state.npz"
    save_npz(path, Nested(State(a=1, b=np.ones(2)), count=5))
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["count", "inner/a", "inner/b"]
    inner = State(a=0, b=np.zeros(2))
    load_npz(path, inner, path="inner/")
    assert inner.a == 1
    np.testing.assert_array_equal(inner.b, [1, 1])


IGNORE_NAMES = [
    ("str", "b"),
    ("list_of_str", ["b", "c"]),
    ("callable", lambda key: key.startswith("b")),
    ("mixed_list", ("nothing", lambda key: key == "b")),
]


@pytest.mark.parametrize(
    "ignore_names",
    [row[1] for row in IGNORE_NAMES],
    ids=[row[0] for row in IGNORE_NAMES],
)
def test_ignore_names(tmp_path, ignore_names):
    path = tmp_path / "state.npz"
    save_npz(path, State(a=1, b=2))
    state = State(a=0, b=0)
    load_npz(path, state, ignore_names=ignore_names)
    assert (state.a, state.b) == (1, 0)


def test_bad_ignore_names(tmp_path):
    with pytest.raises(TypeError, match="ignore_names must be a str, a callable"):
        NpzDeserializer({}, ignore_names=[3])


def test_missing_entry_strict_and_not_strict(tmp_path):
    path = tmp_path / "state.npz"
    save_npz(path, State(a=1))
    state = State(a=0, b=2)
    with pytest.raises(ValueError, match="'b': missing from the file"):
        load_npz(path, state)
    assert (state.a, state.b) == (0, 2)
    load_npz(path, state, strict=False)
    assert (state.a, state.b) == (1, 2)


def test_failed_load_changes_nothing(tmp_path):
    path = tmp_path / "state.npz"
    save_npz(path, State(a=1, b=np.ones(3, "float32")))
    target = np.zeros(3, "float64")
    state = State(a=0, b=target)
    with pytest.raises(ValueError, match="expected shape") as info:
        load_npz(path, state)
    assert "found shape (3,) float32" in str(info.value)
    assert state.a == 0
    assert not target.any()


def test_file_objects(tmp_path):
    buffer = io.BytesIO()
    save_npz(buffer, State(a=4, text="t"))
    buffer.seek(0)
    state = State(a=0, text="")
    load_npz(buffer, state)
    assert (state.a, state.text) == (4, "t")


def test_entry_named_file_does_not_collide(tmp_path):
    path = tmp_path / "state.npz"
    save_npz(path, State(file=1, allow_pickle=2))
    state = State(file=0, allow_pickle=0)
    load_npz(path, state)
    assert (state.file, state.allow_pickle) == (1, 2)


def test_object_values_are_refused(tmp_path):
    with pytest.raises(TypeError, match="value of entry 'value' must be"):
        save_npz(tmp_path / "x.npz", State(value=[{"a": 1}]))
    assert os.listdir(tmp_path) == []


def test_pickled_file_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, value=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="is not a readable NPZ snapshot"):
        load_npz(path, State(value=None))


def _saved(tmp_path):
    path = tmp_path / "state.npz"
    save_npz(path, State(a=np.arange(10000.0), b=1))
    return path


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz"):
        load_npz(tmp_path / "nope.npz", State(a=0))


def test_truncated_file_is_a_clear_error_and_loads_nothing(tmp_path):
    path = _saved(tmp_path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    target = np.zeros(10000)
    state = State(a=target, b=0)
    with pytest.raises(ValueError, match=r"state\.npz.* is not a readable NPZ"):
        load_npz(path, state)
    assert state.b == 0
    assert not target.any()


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), b"", np.lib.format.MAGIC_PREFIX + b"\x01\x00junk"],
    ids=["random", "empty", "npy_header"],
)
def test_garbage_file(tmp_path, content):
    path = tmp_path / "garbage.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a readable NPZ snapshot"):
        load_npz(path, State(a=0))


def test_single_npy_file_is_not_a_snapshot(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.ones(3))
    with pytest.raises(ValueError, match="not an archive"):
        load_npz(path, State(a=0))


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    original = np.lib.format.write_array
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        save_npz(path, State(a=np.zeros(10000), b=2, c=3))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["state.npz"]
    state = State(a=np.zeros(10000), b=0)
    load_npz(path, state)
    assert state.b == 1
    np.testing.assert_array_equal(state.a, np.arange(10000.0))
