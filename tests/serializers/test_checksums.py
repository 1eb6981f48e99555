"""Per-entry checksums: written by save_hdf5, verified by every load."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
from conftest import make_classifier

from ktrainer.serializers import (
    HDF5Serializer,
    load_hdf5,
    load_npz,
    save_hdf5,
    save_npz,
)
from ktrainer.serializers._checksum import ALGORITHM, CHECKSUMS_NAME, digest


class State:
    def __init__(self, **values):
        self.__dict__.update(values)

    def serialize(self, serializer):
        for name in sorted(self.__dict__):
            setattr(self, name, serializer(name, getattr(self, name)))


def _state():
    rng = np.random.default_rng(0)
    return State(
        big=rng.normal(size=(40, 300)).astype(
            "float32"
        ),  # 48000 bytes: 11 blocks + a tail
        small=np.arange(5, dtype="int64"),
        count=7,
        text="abc",
        nothing=None,
    )


def _target():
    return State(
        big=np.zeros((40, 300), "float32"),
        small=np.zeros(5, "int64"),
        count=0,
        text="",
        nothing=None,
    )


def _flip(path, name, byte=0, bit=0):
    """Flips one bit of the data of dataset `name`, in place."""
    with h5py.File(path, "r") as f:
        offset = f[name].id.get_offset()
    with open(path, "r+b") as f:
        f.seek(offset + byte)
        value = f.read(1)[0]
        f.seek(offset + byte)
        f.write(bytes([value ^ (1 << bit)]))


def _snapshot_of(state) -> dict:
    return {
        k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
        for k, v in vars(state).items()
    }


def _assert_unchanged(state, before):
    for key, value in before.items():
        current = getattr(state, key)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(current, value, err_msg=key)
        else:
            assert current == value, key


def test_every_entry_has_a_checksum(tmp_path):
    path = tmp_path / "s.h5"
    save_hdf5(path, _state())
    with h5py.File(path, "r") as f:
        listed = json.loads(f[CHECKSUMS_NAME].asstr()[()])
        assert f.attrs[CHECKSUMS_NAME] == ALGORITHM
    assert listed["algorithm"] == ALGORITHM
    assert sorted(listed["entries"]) == [
        "/big",
        "/count",
        "/nothing",
        "/small",
        "/text",
    ]
    target = _target()
    load_hdf5(path, target)
    np.testing.assert_array_equal(target.big, _state().big)
    assert (target.count, target.text, target.nothing) == (7, "abc", None)


@pytest.mark.parametrize(
    ("name", "byte", "bit"),
    [
        ("big", 0, 0),
        ("big", 47_999, 7),
        ("big", 20_000, 3),
        ("small", 8, 1),
        ("count", 0, 5),
    ],
    ids=["first_bit", "last_bit", "middle", "int_array", "scalar"],
)
def test_a_flipped_bit_is_an_error_naming_the_entry(tmp_path, name, byte, bit):
    path = tmp_path / "s.h5"
    save_hdf5(path, _state())
    _flip(path, name, byte, bit)
    target = _target()
    before = _snapshot_of(target)

    with pytest.raises(ValueError, match="damaged") as info:
        load_hdf5(path, target)

    message = str(info.value)
    assert f"'{name}': cannot be read" in message
    assert "checksum mismatch" in message
    _assert_unchanged(target, before)


def test_a_file_without_checksums_still_loads(tmp_path):
    # As written before checksums existed (or by a bare HDF5Serializer).
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        HDF5Serializer(f).save(_state())
        assert CHECKSUMS_NAME not in f
    target = _target()
    load_hdf5(path, target)
    np.testing.assert_array_equal(target.big, _state().big)
    assert target.count == 7


def test_an_entry_the_checksums_list_but_the_file_lacks_is_damage(tmp_path):
    # Not an old file whose serialize may fall back: strict=False does not help.
    path = tmp_path / "s.h5"
    save_hdf5(path, _state())
    with h5py.File(path, "r+") as f:
        del f["count"]
    target = _target()
    with pytest.raises(ValueError, match=r"'count'.*checksum list names it"):
        load_hdf5(path, target, strict=False)
    assert target.count == 0


@pytest.mark.parametrize("damage", ["edited", "deleted"])
def test_a_damaged_checksum_list_is_an_error(tmp_path, damage):
    path = tmp_path / "s.h5"
    save_hdf5(path, _state())
    with h5py.File(path, "r+") as f:
        del f[CHECKSUMS_NAME]
        if damage == "edited":
            f.create_dataset(
                CHECKSUMS_NAME, data='{"entries": ', dtype=h5py.string_dtype()
            )
    target = _target()
    with pytest.raises(ValueError, match="checksum list"):
        load_hdf5(path, target)
    assert target.count == 0


def test_a_header_that_claims_a_huge_array_fails_at_once(tmp_path):
    # A sparse chunked dataset: 16 GiB declared in a file of a few KiB.
    # Reading it would allocate and fill all of it before anything failed.
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", shape=(1 << 32,), dtype="float32", chunks=(1024,))
    with pytest.raises(ValueError, match=r"declares shape \(4294967296,\).*more than"):
        load_hdf5(path, State(a=None))


def test_a_model_snapshot_with_a_flipped_weight_bit_is_refused(tmp_path):
    model = make_classifier()
    path = tmp_path / "model.h5"
    save_hdf5(path, model)
    kernel = model.get_layer("hidden").kernel
    _flip(path, kernel.path, byte=13, bit=2)
    target = make_classifier()
    before = [np.array(w) for w in target.get_weights()]
    with pytest.raises(ValueError, match=f"'{kernel.path}'.*checksum mismatch"):
        load_hdf5(path, target)
    for expected, actual in zip(before, target.get_weights()):
        np.testing.assert_array_equal(actual, expected)


def test_npz_members_are_verified_by_their_zip_crc(tmp_path):
    path = tmp_path / "s.npz"
    save_npz(path, _state(), compression=False)
    data = bytearray(path.read_bytes())
    at = data.find(_state().big.tobytes()[:64])
    assert at > 0
    data[at + 100] ^= 0x10
    path.write_bytes(bytes(data))
    target = _target()
    with pytest.raises(ValueError, match=r"(?i)crc.*big"):
        load_npz(path, target)
    assert target.count == 0


# -- the digest itself ---------------------------------------------------------


@pytest.mark.parametrize("nbytes", [1, 7, 8, 4095, 4096, 4097, 3 * 4096 + 5])
def test_digest_changes_with_every_single_bit(nbytes):
    data = np.random.default_rng(nbytes).integers(0, 256, nbytes, dtype=np.uint8)
    reference = digest(data)
    rng = np.random.default_rng(1)
    positions = {0, nbytes - 1, *rng.integers(0, nbytes, 20).tolist()}
    for position in positions:
        for bit in range(8):
            flipped = data.copy()
            flipped[position] ^= 1 << bit
            assert digest(flipped) != reference, (position, bit)


def test_digest_sees_moved_blocks_dtype_and_shape():
    data = np.random.default_rng(0).normal(size=4 * 1024).astype("float32")  # 4 blocks
    reference = digest(data)
    swapped = data.reshape(4, 1024)[[1, 0, 2, 3]].reshape(-1)
    assert digest(swapped) != reference
    assert digest(data.view("int32")) != reference
    assert digest(data.reshape(2, -1)) != reference
    zeroed = data.copy()
    zeroed[1024:2048] = 0
    assert digest(zeroed) != reference


def test_digest_of_strings_and_none_is_stable():
    assert digest("abc") == digest(np.array("abc"))
    assert digest("abc") != digest("abd")
    assert digest(np.array(["a", "b"])) != digest(np.array(["b", "a"]))
    from ktrainer.serializers._values import NONE

    assert digest(NONE) != digest("")


def test_saved_file_names_no_temporary_entry(tmp_path):
    save_hdf5(tmp_path / "s.h5", _state())
    assert os.listdir(tmp_path) == ["s.h5"]


def test_a_large_array_is_verified(tmp_path):
    big = np.random.default_rng(0).normal(size=(1500, 1001)).astype("float32")
    path = tmp_path / "big.h5"
    save_hdf5(path, State(big=big))
    target = State(big=np.zeros_like(big))
    load_hdf5(path, target)
    np.testing.assert_array_equal(target.big, big)
    _flip(path, "big", byte=5_000_000, bit=6)
    with pytest.raises(ValueError, match=r"'big'.*checksum mismatch"):
        load_hdf5(path, State(big=np.zeros_like(big)))


def test_a_compressed_array_whose_shape_grew_fails_at_once(tmp_path):
    # What a damaged dimension of a compressed (chunked) entry looks like:
    # a shape whose chunks were never written. HDF5 would fill each one.
    path = tmp_path / "grown.h5"
    with h5py.File(path, "w") as f:
        dataset = f.create_dataset(
            "a", shape=(4096,), maxshape=(None,), dtype="float32", chunks=(64,)
        )
        dataset[:] = 1.0
        dataset.resize((4096 * 64,))  # 1 MiB declared, 64 KiB stored
    with pytest.raises(ValueError, match=r"4096 chunks, but the file holds 64"):
        load_hdf5(path, State(a=None))


def test_a_compressed_snapshot_round_trips(tmp_path):
    path = tmp_path / "c.h5"
    save_hdf5(path, _state(), compression=4)
    target = _target()
    load_hdf5(path, target)
    np.testing.assert_array_equal(target.big, _state().big)


def test_digests_from_the_background_thread_match_inline_ones(tmp_path):
    # Arrays above the hand-off size are digested in a thread while the
    # file is written; the list must hold exactly the digests of the data.
    rng = np.random.default_rng(1)
    state = State(
        a=rng.normal(size=(300, 400)).astype("float32"),  # threaded
        b=rng.normal(size=(700, 300)).astype("float64"),  # threaded
        c=np.arange(10, dtype="int32"),  # inline
    )
    path = tmp_path / "s.h5"
    save_hdf5(path, state)
    with h5py.File(path, "r") as f:
        stored = json.loads(f[CHECKSUMS_NAME].asstr()[()])["entries"]
    assert stored == {f"/{k}": digest(v) for k, v in vars(state).items()}


def test_a_failed_save_leaves_no_digest_thread_and_no_file(tmp_path):
    import threading

    class Failing:
        def serialize(self, serializer):
            serializer("big", np.ones((512, 512), "float32"))  # threaded
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_hdf5(tmp_path / "s.h5", Failing())
    assert os.listdir(tmp_path) == []
    assert not [
        t for t in threading.enumerate() if t.name.startswith("ktrainer-digest")
    ]
