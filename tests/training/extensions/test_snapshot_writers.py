"""Snapshot writers: atomic writes, the background writer and its host copy."""

from __future__ import annotations

import errno
import os
import threading
import time

import h5py
import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer.iterators import SerialIterator
from ktrainer.serializers import (
    DictionarySerializer,
    HDF5Deserializer,
    load_hdf5,
    save_hdf5,
    save_npz,
)
from ktrainer.training import Trainer
from ktrainer.training.extensions import snapshot, snapshot_writers
from ktrainer.training.extensions.snapshot_writers import (
    SimpleWriter,
    ThreadWriter,
    Writer,
)
from ktrainer.training.updaters import StandardUpdater


def _trained_trainer(out, iterations=3, dropout=0.2):
    model = make_classifier(dropout=dropout, optimizer=keras.optimizers.Adam(0.01))
    iterator = SerialIterator(make_dataset(), 16, shuffle=True)
    trainer = Trainer(
        StandardUpdater(iterator, model), (iterations, "iteration"), out=out
    )
    trainer.extend(snapshot(), trigger=(100, "iteration"))
    trainer.run()
    return trainer


def _contents(path) -> dict:
    """Every group and dataset of an HDF5 file: name -> (dtype, shape, value)."""
    items = {}

    def visit(name, node):
        if isinstance(node, h5py.Dataset):
            value = None if node.shape is None else node[()]
            items[name] = (node.dtype, node.shape, value)
        else:
            items[name] = "group"

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return items


def _assert_same_file_contents(expected_path, actual_path):
    expected, actual = _contents(expected_path), _contents(actual_path)
    assert list(actual) == list(expected)
    for name, item in expected.items():
        if item == "group":
            assert actual[name] == "group", name
            continue
        dtype, shape, value = item
        assert actual[name][:2] == (dtype, shape), name
        np.testing.assert_array_equal(actual[name][2], value, err_msg=name)


def _write_and_wait(writer, filename, outdir, target):
    writer(filename, outdir, target)
    writer.finalize()


def _temp_files(out) -> list[str]:
    return [n for n in os.listdir(out) if n.endswith(".tmp")]


# -- Writer / SimpleWriter ---------------------------------------------------------


def test_writer_base_class_must_be_subclassed(tmp_out):
    with pytest.raises(NotImplementedError, match="Writer must implement"):
        Writer()("snap", tmp_out, object())


@pytest.mark.parametrize("writer_class", [SimpleWriter, ThreadWriter])
def test_savefun_must_be_callable(writer_class):
    with pytest.raises(TypeError, match="savefun must be a callable"):
        writer_class(savefun="save_hdf5")


def test_simple_writer_writes_with_savefun_and_kwds(tmp_out):
    trainer = _trained_trainer(tmp_out)
    writer = SimpleWriter(compression=4)

    writer("snap", os.path.join(tmp_out, "new_dir"), trainer)

    path = os.path.join(tmp_out, "new_dir", "snap")
    with h5py.File(path, "r") as f:
        kernel = f["updater/model:main/classifier/hidden/kernel"]
        assert kernel.compression == "gzip"
        assert kernel.compression_opts == 4
    assert _temp_files(os.path.dirname(path)) == []


def test_simple_writer_accepts_other_savefuns(tmp_out):
    trainer = _trained_trainer(tmp_out)

    SimpleWriter(save_npz)("snap.npz", tmp_out, trainer)

    with np.load(os.path.join(tmp_out, "snap.npz")) as archive:
        assert int(archive["updater/iteration"]) == 3


def _failing_savefun(path, target):
    with open(path, "wb") as f:
        f.write(b"half a snapshot")
    raise OSError("No space left on device")


@pytest.mark.parametrize("writer_class", [SimpleWriter, ThreadWriter])
def test_failed_write_leaves_the_previous_file(tmp_out, writer_class):
    trainer = _trained_trainer(tmp_out)
    path = os.path.join(tmp_out, "snap")
    save_hdf5(path, trainer)
    before = _contents(path)
    writer = writer_class(_failing_savefun)

    with pytest.raises(OSError, match="No space left"):
        _write_and_wait(writer, "snap", tmp_out, trainer)

    assert _contents(path).keys() == before.keys()
    assert _temp_files(tmp_out) == []


def test_post_save_hooks_run_after_each_save_once(tmp_out):
    calls = []
    writer = SimpleWriter()

    def hook():
        calls.append(sorted(os.listdir(tmp_out)))

    writer._add_cleanup_hook(hook)
    writer._add_cleanup_hook(hook)  # initialize of a second run adds it again
    writer("a", tmp_out, _trained_trainer(tmp_out))

    assert calls == [["a"]]


# -- ThreadWriter ------------------------------------------------------------------


def test_thread_writer_file_equals_save_hdf5_file(tmp_out):
    trainer = _trained_trainer(tmp_out)
    save_hdf5(os.path.join(tmp_out, "direct"), trainer)
    writer = ThreadWriter()

    writer("threaded", tmp_out, trainer)
    writer.finalize()

    _assert_same_file_contents(
        os.path.join(tmp_out, "direct"), os.path.join(tmp_out, "threaded")
    )


def test_thread_writer_file_loads_into_a_fresh_trainer(tmp_out):
    trainer = _trained_trainer(tmp_out)
    writer = ThreadWriter()
    writer("threaded", tmp_out, trainer)
    writer.finalize()
    fresh_model = make_classifier(dropout=0.2, optimizer=keras.optimizers.Adam(0.01))
    fresh = Trainer(
        StandardUpdater(SerialIterator(make_dataset(), 16, shuffle=True), fresh_model),
        (3, "iteration"),
        out=tmp_out,
    )
    fresh.extend(snapshot(), trigger=(100, "iteration"))

    load_hdf5(os.path.join(tmp_out, "threaded"), fresh)

    assert fresh.updater.iteration == 3
    for expected, actual in zip(
        trainer.updater.get_model().weights, fresh_model.weights
    ):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected)
        )


def test_thread_writer_writes_the_state_at_the_call(tmp_out):
    trainer = _trained_trainer(tmp_out)
    model = trainer.updater.get_model()
    kernel = model.get_layer("hidden").kernel
    expected = np.array(keras.ops.convert_to_numpy(kernel))
    release = threading.Event()

    def slow_save(path, target):
        release.wait(timeout=30)
        save_hdf5(path, target)

    writer = ThreadWriter(slow_save)
    writer("snap", tmp_out, trainer)
    # Training goes on (in place on torch) while the write waits.
    kernel.assign(np.zeros_like(expected))
    trainer.updater.iteration = 99
    release.set()
    writer.finalize()

    with h5py.File(os.path.join(tmp_out, "snap"), "r") as f:
        np.testing.assert_array_equal(
            f["updater/model:main/classifier/hidden/kernel"][()], expected
        )
        assert f["updater/iteration"][()] == 3


def test_thread_writer_returns_before_the_write_finishes(tmp_out):
    trainer = _trained_trainer(tmp_out)
    release = threading.Event()
    writer = ThreadWriter(lambda path, target: release.wait(timeout=30))

    writer("snap", tmp_out, trainer)

    assert not os.path.exists(os.path.join(tmp_out, "snap"))
    release.set()
    writer.finalize()
    assert os.path.exists(os.path.join(tmp_out, "snap"))


def test_thread_writer_has_one_write_in_flight(tmp_out):
    trainer = _trained_trainer(tmp_out)
    active, peak, order = [0], [0], []
    lock = threading.Lock()

    def tracking_save(path, target):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        save_hdf5(path, target)
        with lock:
            active[0] -= 1
            order.append(os.path.basename(path))

    writer = ThreadWriter(tracking_save)
    for name in ("a", "b", "c"):
        writer(name, tmp_out, trainer)
    writer.finalize()

    assert peak[0] == 1
    assert len(order) == 3
    assert sorted(n for n in os.listdir(tmp_out) if n in "abc") == ["a", "b", "c"]


def test_thread_writer_error_is_raised_by_the_next_call(tmp_out):
    trainer = _trained_trainer(tmp_out)
    writer = ThreadWriter(_failing_savefun)
    writer("a", tmp_out, trainer)
    writer.savefun = save_hdf5

    with pytest.raises(OSError, match="No space left"):
        writer("b", tmp_out, trainer)

    writer.finalize()  # the error was raised once; nothing is pending
    assert not os.path.exists(os.path.join(tmp_out, "b"))


def test_thread_writer_error_is_raised_by_finalize(tmp_out):
    trainer = _trained_trainer(tmp_out)
    writer = ThreadWriter(_failing_savefun)
    writer("a", tmp_out, trainer)

    with pytest.raises(OSError, match="No space left"):
        writer.finalize()

    assert not os.path.exists(os.path.join(tmp_out, "a"))


def test_thread_writer_error_fails_the_training_run(tmp_out):
    model = make_classifier()
    trainer = Trainer(
        StandardUpdater(SerialIterator(make_dataset(), 16), model),
        (3, "iteration"),
        out=tmp_out,
    )
    extension = snapshot(writer=ThreadWriter(_failing_savefun))
    trainer.extend(extension, trigger=(3, "iteration"))

    with pytest.raises(OSError, match="No space left"):
        trainer.run(show_loop_exception_msg=False)


# -- the host copy -----------------------------------------------------------------


def test_host_copy_replays_into_any_serializer(tmp_out):
    trainer = _trained_trainer(tmp_out)
    direct: dict = {}
    DictionarySerializer(direct).save(trainer)

    copy = snapshot_writers._HostCopy(trainer)
    replayed: dict = {}
    DictionarySerializer(replayed).save(copy)

    assert list(replayed) == list(direct)
    for key, value in direct.items():
        np.testing.assert_array_equal(replayed[key], value, err_msg=key)
    assert copy.nbytes >= sum(
        v.nbytes for k, v in direct.items() if k.startswith("updater/model")
    )


def test_host_copy_cannot_be_loaded_into(tmp_out):
    trainer = _trained_trainer(tmp_out)
    path = os.path.join(tmp_out, "snap")
    save_hdf5(path, trainer)
    copy = snapshot_writers._HostCopy(trainer)

    with (
        h5py.File(path, "r") as f,
        pytest.raises(TypeError, match="can be saved but not loaded"),
    ):
        HDF5Deserializer(f).load(copy)


def _save_to_a_full_disk(path, target):
    # /dev/full fails every write with ENOSPC, as a full disk does.
    with open("/dev/full", "wb") as f:
        save_npz(f, target)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_thread_writer_disk_full_error_reaches_the_training_thread(tmp_out):
    model = make_classifier()
    trainer = Trainer(
        StandardUpdater(SerialIterator(make_dataset(), 16), model),
        (6, "iteration"),
        out=tmp_out,
    )
    trainer.extend(
        snapshot(writer=ThreadWriter(_save_to_a_full_disk)), trigger=(2, "iteration")
    )

    with pytest.raises(OSError, match="No space left") as info:
        trainer.run(show_loop_exception_msg=False)

    assert info.value.errno == errno.ENOSPC
    # Raised by the next snapshot, in the training thread: training stopped there.
    assert trainer.updater.iteration == 4
    assert os.listdir(tmp_out) == []  # no temporary file left behind
