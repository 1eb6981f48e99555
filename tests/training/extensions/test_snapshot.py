"""snapshot / snapshot_object: writing, retention, autoload and bad input."""

from __future__ import annotations

import os
import shutil

import h5py
import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer.iterators import SerialIterator
from ktrainer.serializers import load_hdf5, load_npz, save_hdf5, save_npz
from ktrainer.testing import get_trainer_with_mock_updater
from ktrainer.training import Trainer
from ktrainer.training.extensions import snapshot, snapshot_object, snapshot_writers
from ktrainer.training.updaters import StandardUpdater


def _mock_trainer(out, stop=10, extension=None, trigger=(1, "iteration")):
    trainer = get_trainer_with_mock_updater((stop, "iteration"))
    trainer.out = out
    if extension is not None:
        trainer.extend(extension, trigger=trigger)
    return trainer


def _real_trainer(out, stop, extension=None, trigger=(2, "iteration"), n_hidden=16):
    model = make_classifier(n_hidden=n_hidden)
    iterator = SerialIterator(make_dataset(), 16, shuffle=True)
    trainer = Trainer(StandardUpdater(iterator, model), (stop, "iteration"), out=out)
    if extension is not None:
        trainer.extend(extension, trigger=trigger)
    return trainer


def _snapshot_names(out) -> list[str]:
    return sorted(os.listdir(out))


def _iteration_in(path, extension) -> int:
    trainer = _mock_trainer(os.path.dirname(path), 10, extension, (3, "iteration"))
    load_hdf5(path, trainer)
    return trainer.updater.iteration


def _write_snapshots(out, iterations, mtime_step=1.0):
    """Snapshots of a mock trainer at `iterations`, older to newer.

    The trainer has a snapshot extension as the loading ones do, so that
    the files hold the state of its trigger.
    """
    base = 1_700_000_000.0
    for index, iteration in enumerate(iterations):
        trainer = _mock_trainer(out, 10, snapshot(), (100, "iteration"))
        trainer.updater._set_iteration(iteration)
        path = os.path.join(out, f"snapshot_iter_{iteration}")
        save_hdf5(path, trainer)
        os.utime(path, (base + index * mtime_step,) * 2)


# -- defaults and writing ------------------------------------------------------


def test_defaults():
    extension = snapshot()

    assert extension.trigger == (1, "epoch")
    assert extension.priority == -100
    assert extension.needs_model_state is True
    assert extension.filename == "snapshot_iter_{.updater.iteration}"
    assert isinstance(extension.writer, snapshot_writers.SimpleWriter)
    assert extension.writer.savefun is save_hdf5
    assert extension.autoload is False
    assert extension.n_retains == -1


FILENAMES = [
    ("default", "snapshot_iter_{.updater.iteration}", "snapshot_iter_{}"),
    ("epoch_detail", "snap_{.updater.epoch_detail:.1f}.h5", "snap_0.{}.h5"),
    ("callable", lambda t: f"s{t.updater.iteration}", "s{}"),
]


@pytest.mark.parametrize(
    ("filename", "expected"),
    [(f, e) for _, f, e in FILENAMES],
    ids=[name for name, _, _ in FILENAMES],
)
def test_files_are_named_from_the_trainer(tmp_out, filename, expected):
    trainer = _mock_trainer(tmp_out, 10, snapshot(filename=filename), (3, "iteration"))

    trainer.run()

    names = [expected.format(i) for i in (3, 6, 9)]
    assert _snapshot_names(tmp_out) == sorted(names)
    path = os.path.join(tmp_out, names[-1])
    assert _iteration_in(path, snapshot(filename=filename)) == 9


def test_condition_gates_writing(tmp_out):
    calls = []

    def condition():
        calls.append(None)
        return len(calls) % 2 == 1

    trainer = _mock_trainer(tmp_out, 4, snapshot(condition=condition))
    trainer.run()

    assert len(calls) == 4
    assert _snapshot_names(tmp_out) == ["snapshot_iter_1", "snapshot_iter_3"]


class _Boom(Exception):
    pass


def _fail_at(iteration):
    def fail(trainer):
        if trainer.updater.iteration == iteration:
            raise _Boom("boom")

    return fail


@pytest.mark.parametrize(
    ("snapshot_on_error", "expected"),
    [(True, ["snapshot_iter_5"]), (False, [])],
    ids=["on", "off"],
)
def test_snapshot_on_error(tmp_out, snapshot_on_error, expected):
    trainer = _mock_trainer(
        tmp_out, 10, snapshot(snapshot_on_error=snapshot_on_error), (100, "iteration")
    )
    trainer.extend(_fail_at(5), name="fail")

    with pytest.raises(_Boom):
        trainer.run(show_loop_exception_msg=False)

    assert _snapshot_names(tmp_out) == expected


def test_snapshot_is_taken_after_the_other_extensions(tmp_out):
    seen = []
    trainer = _mock_trainer(tmp_out, 2)
    trainer.extend(snapshot(filename="s{.updater.iteration}"), trigger=(1, "iteration"))
    # Registered later with a lower priority than the default one.
    trainer.extend(lambda t: seen.append(_snapshot_names(tmp_out)), priority=-99)

    trainer.run()

    assert seen == [[], ["s1"]]


def test_snapshot_object_saves_only_its_target(tmp_out):
    trainer = _real_trainer(tmp_out, 4)
    model = trainer.updater.get_model()
    trainer.extend(
        snapshot_object(model, "model_{.updater.iteration}.h5"),
        trigger=(4, "iteration"),
    )

    trainer.run()

    path = os.path.join(tmp_out, "model_4.h5")
    with h5py.File(path, "r") as f:
        assert sorted(f) == [".ktrainer_checksums", "classifier"]
    fresh = make_classifier()
    load_hdf5(path, fresh)
    for expected, actual in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected)
        )


def test_savefun_is_used_and_autoload_reads_its_format(tmp_out):
    first = _mock_trainer(
        tmp_out, 6, snapshot(save_npz, "snap_{.updater.iteration}.npz")
    )
    first.run()
    reloaded = _mock_trainer(
        tmp_out, 6, snapshot(save_npz, "snap_{.updater.iteration}.npz")
    )
    load_npz(os.path.join(tmp_out, "snap_6.npz"), reloaded)
    assert reloaded.updater.iteration == 6

    second = _mock_trainer(
        tmp_out, 8, snapshot(save_npz, "snap_{.updater.iteration}.npz", autoload=True)
    )
    second.run()

    assert second.get_extension("_Snapshot").loaded_from == os.path.join(
        tmp_out, "snap_6.npz"
    )
    assert second.updater.update_core_calls == 2


def test_finalize_finalizes_the_writer(tmp_out):
    class RecordingWriter(snapshot_writers.Writer):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __call__(self, filename, outdir, target):
            self.calls.append((filename, outdir, target))

        def finalize(self):
            self.calls.append("finalize")

    writer = RecordingWriter()
    trainer = _mock_trainer(tmp_out, 2, snapshot(writer=writer))

    trainer.run()

    assert writer.calls == [
        ("snapshot_iter_1", tmp_out, trainer),
        ("snapshot_iter_2", tmp_out, trainer),
        "finalize",
    ]


# -- n_retains -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_retains", "expected"),
    [
        (2, ["snapshot_iter_10", "snapshot_iter_12"]),
        (1, ["snapshot_iter_12"]),
        (-1, [f"snapshot_iter_{i}" for i in (10, 12, 2, 4, 6, 8)]),
    ],
    ids=["two", "one", "all"],
)
def test_n_retains_keeps_the_newest(tmp_out, n_retains, expected):
    for name in ("log", "other_1", ".snapshot_iter_3.0123abcd.tmp"):
        with open(os.path.join(tmp_out, name), "w") as f:
            f.write("not a snapshot")
    trainer = _mock_trainer(
        tmp_out, 12, snapshot(n_retains=n_retains), (2, "iteration")
    )

    trainer.run()

    # The leftover temporary file of a snapshot is removed at initialize.
    others = ["log", "other_1"]
    assert _snapshot_names(tmp_out) == sorted(expected + others)


def test_n_retains_with_thread_writer(tmp_out):
    extension = snapshot(writer=snapshot_writers.ThreadWriter(), n_retains=1)
    trainer = _mock_trainer(tmp_out, 6, extension, (2, "iteration"))

    trainer.run()

    assert _snapshot_names(tmp_out) == ["snapshot_iter_6"]


# -- autoload ------------------------------------------------------------------


def test_autoload_loads_the_newest_snapshot(tmp_out):
    _write_snapshots(tmp_out, [2, 4, 6])
    extension = snapshot(autoload=True)
    trainer = _mock_trainer(tmp_out, 10, extension, (100, "iteration"))

    trainer.run()

    assert extension.loaded_from == os.path.join(tmp_out, "snapshot_iter_6")
    assert trainer.updater.update_core_calls == 4


def test_autoload_goes_by_modification_time(tmp_out):
    # As in Chainer: the most recently written file wins, not the largest number.
    _write_snapshots(tmp_out, [6, 2])
    extension = snapshot(autoload=True)

    _mock_trainer(tmp_out, 10, extension, (100, "iteration")).run()

    assert extension.loaded_from == os.path.join(tmp_out, "snapshot_iter_2")


def test_autoload_orders_equal_times_by_number(tmp_out):
    _write_snapshots(tmp_out, [9, 11, 10], mtime_step=0.0)
    extension = snapshot(autoload=True)

    _mock_trainer(tmp_out, 12, extension, (100, "iteration")).run()

    assert extension.loaded_from == os.path.join(tmp_out, "snapshot_iter_11")


@pytest.mark.parametrize("exists", [True, False], ids=["empty_out", "missing_out"])
def test_autoload_without_snapshots_starts_fresh(tmp_out, exists):
    out = tmp_out if exists else os.path.join(tmp_out, "new")
    extension = snapshot(autoload=True)
    trainer = _mock_trainer(out, 3, extension, (100, "iteration"))

    trainer.run()

    assert extension.loaded_from is None
    assert trainer.updater.update_core_calls == 3


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _garbage(path):
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).bytes(4096))


def _empty(path):
    open(path, "wb").close()


DAMAGES = [
    ("truncated", _truncate),
    ("garbage", _garbage),
    ("empty", _empty),
]


@pytest.mark.parametrize("damage", [d for _, d in DAMAGES], ids=[n for n, _ in DAMAGES])
def test_autoload_skips_a_damaged_newest_snapshot(tmp_out, damage):
    _write_snapshots(tmp_out, [3, 6])
    damaged = os.path.join(tmp_out, "snapshot_iter_6")
    damage(damaged)
    os.utime(damaged, (1_800_000_000,) * 2)
    extension = snapshot(autoload=True)
    trainer = _mock_trainer(tmp_out, 10, extension, (100, "iteration"))

    with pytest.warns(RuntimeWarning, match="snapshot_iter_6.*damaged or truncated"):
        trainer.run()

    assert extension.loaded_from == os.path.join(tmp_out, "snapshot_iter_3")
    assert trainer.updater.update_core_calls == 7


def test_autoload_with_only_damaged_snapshots_starts_fresh(tmp_out):
    _write_snapshots(tmp_out, [3, 6])
    for name in ("snapshot_iter_3", "snapshot_iter_6"):
        _truncate(os.path.join(tmp_out, name))
    extension = snapshot(autoload=True)
    trainer = _mock_trainer(tmp_out, 2, extension, (100, "iteration"))

    with pytest.warns(RuntimeWarning) as record:
        trainer.run()

    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert "snapshot_iter_3" in messages[0]
    assert "snapshot_iter_6" in messages[1]
    assert extension.loaded_from is None
    assert trainer.updater.update_core_calls == 2


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "garbage"])
def test_loading_a_damaged_snapshot_raises_a_clear_error(tmp_out, damage):
    _write_snapshots(tmp_out, [3])
    path = os.path.join(tmp_out, "snapshot_iter_3")
    damage(path)
    trainer = _mock_trainer(tmp_out)

    with pytest.raises(ValueError, match="snapshot_iter_3") as info:
        load_hdf5(path, trainer)

    assert "truncated" in str(info.value)
    assert trainer.updater.iteration == 0


def test_autoload_of_a_snapshot_that_does_not_fit_raises(tmp_out):
    # A readable snapshot of another model is a mistake, not damage: no fallback.
    _real_trainer(tmp_out, 2, snapshot(), (2, "iteration")).run()
    trainer = _real_trainer(tmp_out, 4, snapshot(autoload=True), (100, "iteration"), 8)
    before = [
        keras.ops.convert_to_numpy(w) for w in trainer.updater.get_model().weights
    ]

    with pytest.raises(ValueError, match="snapshot_iter_2"):
        trainer.run(show_loop_exception_msg=False)

    after = [keras.ops.convert_to_numpy(w) for w in trainer.updater.get_model().weights]
    for expected, actual in zip(before, after):
        np.testing.assert_array_equal(actual, expected)
    assert trainer.updater.iteration == 0


# -- interrupted writes ----------------------------------------------------------


def test_interrupted_write_keeps_the_previous_snapshot(tmp_out, monkeypatch):
    _real_trainer(tmp_out, 2, snapshot(), (2, "iteration")).run()
    assert _snapshot_names(tmp_out) == ["snapshot_iter_2"]
    original = h5py.Group.create_dataset
    calls = []

    def failing_create_dataset(self, *args, **kwargs):
        calls.append(args[0] if args else kwargs.get("name"))
        if len(calls) > 5:
            raise OSError("No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create_dataset)
    second = _real_trainer(tmp_out, 4, snapshot(autoload=True), (2, "iteration"))

    with pytest.raises(OSError, match="No space left"):
        second.run(show_loop_exception_msg=False)

    monkeypatch.undo()
    assert len(calls) == 6  # died part-way through the snapshot of iteration 4
    assert _snapshot_names(tmp_out) == ["snapshot_iter_2"]  # no temporary left
    third_extension = snapshot(autoload=True)
    third = _real_trainer(tmp_out, 4, third_extension, (100, "iteration"))
    third.run()
    assert third_extension.loaded_from == os.path.join(tmp_out, "snapshot_iter_2")
    assert third.updater.iteration == 4


def test_leftover_temporary_file_is_ignored(tmp_out):
    # What a write killed before its rename leaves behind.
    _write_snapshots(tmp_out, [3])
    partial = os.path.join(tmp_out, ".snapshot_iter_6.0123abcd.tmp")
    shutil.copy(os.path.join(tmp_out, "snapshot_iter_3"), partial)
    _truncate(partial)
    extension = snapshot(autoload=True)

    _mock_trainer(tmp_out, 4, extension, (100, "iteration")).run()

    assert extension.loaded_from == os.path.join(tmp_out, "snapshot_iter_3")


# -- bad input -----------------------------------------------------------------


BAD_ARGUMENTS = [
    (
        "savefun_and_writer",
        {"savefun": save_hdf5, "writer": snapshot_writers.SimpleWriter()},
        TypeError,
        "savefun and writer",
    ),
    ("savefun_not_callable", {"savefun": "h5"}, TypeError, "savefun must be"),
    ("condition_not_callable", {"condition": True}, TypeError, "condition must be"),
    ("writer_not_callable", {"writer": "thread"}, TypeError, "writer must be"),
    ("filename_not_str", {"filename": 3}, TypeError, "filename must be"),
    ("filename_empty", {"filename": ""}, ValueError, "filename must not be empty"),
    ("filename_bad_format", {"filename": "snap_{"}, ValueError, "valid format string"),
    (
        "filename_with_directory",
        {"filename": "sub/snap_{.updater.iteration}"},
        ValueError,
        "directly in trainer.out",
    ),
    ("n_retains_not_int", {"n_retains": 2.0}, TypeError, "n_retains must be an int"),
    ("n_retains_bool", {"n_retains": True}, TypeError, "n_retains must be an int"),
    ("autoload_not_bool", {"autoload": "yes"}, TypeError, "autoload must be a bool"),
    (
        "on_error_not_bool",
        {"snapshot_on_error": 1},
        TypeError,
        "snapshot_on_error must be a bool",
    ),
    (
        "autoload_callable_filename",
        {"filename": lambda t: "s", "autoload": True},
        ValueError,
        "format string for autoload",
    ),
    (
        "n_retains_callable_filename",
        {"filename": lambda t: "s", "n_retains": 2},
        ValueError,
        "format string for autoload",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [(k, e, m) for _, k, e, m in BAD_ARGUMENTS],
    ids=[name for name, *_ in BAD_ARGUMENTS],
)
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        snapshot(**kwargs)


def test_snapshot_object_takes_the_same_keywords(tmp_out):
    with pytest.raises(ValueError, match="format string for autoload"):
        snapshot_object(object(), lambda t: "s", autoload=True)


# -- checksums, temporary files, messages ------------------------------------------


def _flip_a_data_bit(path):
    """Flips one bit of a stored number: the file still opens and reads."""
    with h5py.File(path, "r") as f:
        offset = f["updater/iteration"].id.get_offset()
    with open(path, "r+b") as f:
        f.seek(offset)
        value = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([value ^ 0x04]))


def test_autoload_skips_a_snapshot_whose_checksum_fails(tmp_out):
    _write_snapshots(tmp_out, [3, 6])
    damaged = os.path.join(tmp_out, "snapshot_iter_6")
    _flip_a_data_bit(damaged)
    os.utime(damaged, (1_800_000_000,) * 2)
    extension = snapshot(autoload=True)
    trainer = _mock_trainer(tmp_out, 10, extension, (100, "iteration"))

    with pytest.warns(RuntimeWarning, match="snapshot_iter_6.*damaged") as record:
        trainer.run()

    message = str(record[0].message)
    assert "'updater/iteration'" in message
    assert "checksum mismatch" in message
    assert extension.loaded_from == os.path.join(tmp_out, "snapshot_iter_3")
    assert trainer.updater.update_core_calls == 7


def test_loading_a_snapshot_with_a_flipped_bit_names_the_entry(tmp_out):
    _write_snapshots(tmp_out, [3])
    path = os.path.join(tmp_out, "snapshot_iter_3")
    _flip_a_data_bit(path)
    trainer = _mock_trainer(tmp_out)

    with pytest.raises(ValueError, match=r"'updater/iteration'.*checksum mismatch"):
        load_hdf5(path, trainer)

    assert trainer.updater.iteration == 0


def test_stale_temporary_files_of_its_own_snapshots_are_removed(tmp_out):
    ours = [
        ".snapshot_iter_6.0123abcd.tmp",
        ".snapshot_iter_12.deadbeef.tmp",
        "..snapshot_iter_6.0123abcd.tmp.456789ab.tmp",  # a savefun's own temp
    ]
    others = [
        ".log.0123abcd.tmp",  # another extension's
        ".model_3.0123abcd.tmp",  # another snapshot's name
        ".snapshot_iter_6.xyz.tmp",  # not our random suffix
        "snapshot_iter_6.0123abcd.tmp",  # no leading dot
        ".snapshot_iter_6.0123abcd.tmp.keep",
        "...snapshot_iter_6.0123abcd.tmp",
        "notes.txt",
    ]
    for name in ours + others:
        with open(os.path.join(tmp_out, name), "w") as f:
            f.write("partial")
    os.mkdir(os.path.join(tmp_out, ".snapshot_iter_7.0123abcd.tmp"))  # not a file

    _mock_trainer(tmp_out, 1, snapshot(), (100, "iteration")).run()

    assert _snapshot_names(tmp_out) == sorted(
        [*others, ".snapshot_iter_7.0123abcd.tmp"]
    )


def test_filename_naming_a_missing_attribute_fails_before_training(tmp_out):
    extension = snapshot(filename="snap_{.updater.iter}")
    trainer = _mock_trainer(tmp_out, 4, extension, (1, "epoch"))

    with pytest.raises(ValueError, match=r"filename must be a format string.*") as info:
        trainer.run(show_loop_exception_msg=False)

    message = str(info.value)
    assert "Received: filename='snap_{.updater.iter}'" in message
    assert "iter" in message
    assert trainer.updater.update_core_calls == 0


def test_autoload_logs_the_snapshot_and_the_iteration(tmp_out, caplog):
    _real_trainer(tmp_out, 4, snapshot(), (4, "iteration")).run()
    trainer = _real_trainer(tmp_out, 6, snapshot(autoload=True), (100, "iteration"))

    with caplog.at_level("INFO", logger="ktrainer"):
        trainer.run()

    records = [r for r in caplog.records if r.name.startswith("ktrainer")]
    assert len(records) == 1
    message = records[0].getMessage()
    assert os.path.join(tmp_out, "snapshot_iter_4") in message
    assert "iteration 4, epoch 1" in message


def test_autoload_logs_nothing_when_it_starts_fresh(tmp_out, caplog):
    with caplog.at_level("INFO", logger="ktrainer"):
        _mock_trainer(tmp_out, 2, snapshot(autoload=True), (100, "iteration")).run()
    assert [r for r in caplog.records if r.name.startswith("ktrainer")] == []


def test_a_keras_weights_file_loaded_into_a_trainer_says_what_it_is(tmp_out):
    trainer = _real_trainer(tmp_out, 2)
    path = os.path.join(tmp_out, "model.weights.h5")
    trainer.updater.get_model().save_weights(path)

    with pytest.raises(ValueError, match="holds no state") as info:
        load_hdf5(path, trainer)

    message = str(info.value)
    assert "holds no state of the Trainer" in message
    assert "'layers/'" in message
    assert "'updater/'" in message
    assert "Keras weights file" in message
    assert "model.load_weights" in message


def test_a_bare_model_file_loaded_into_a_trainer_says_what_it_is(tmp_out):
    trainer = _real_trainer(tmp_out, 2)
    path = os.path.join(tmp_out, "model.h5")
    save_hdf5(path, trainer.updater.get_model())

    with pytest.raises(ValueError, match="holds no state") as info:
        load_hdf5(path, trainer)

    message = str(info.value)
    assert "holds no state of the Trainer" in message
    assert "'classifier/'" in message
    assert "load_hdf5(path, trainer.updater.get_model())" in message
    assert "iterator" not in message


def test_missing_snapshot_error_names_the_path_once(tmp_out):
    path = os.path.join(tmp_out, "nope.h5")
    with pytest.raises(FileNotFoundError) as info:
        load_hdf5(path, _mock_trainer(tmp_out))
    assert str(info.value).count(path) == 1
    with pytest.raises(FileNotFoundError) as info:
        load_npz(path, _mock_trainer(tmp_out))
    assert str(info.value).count(path) == 1
