"""Trainer loop semantics, checked with the counting (mock) updater."""

from __future__ import annotations

import pytest

from ktrainer import training
from ktrainer.testing import get_trainer_with_mock_updater


class _Recorder(training.Extension):
    def __init__(self, log, label, **attrs):
        self.log, self.label = log, label
        for k, v in attrs.items():
            setattr(self, k, v)

    def __call__(self, trainer):
        self.log.append((trainer.updater.iteration, self.label))

    def initialize(self, trainer):
        self.log.append(("init", self.label))

    def finalize(self):
        self.log.append(("finalize", self.label))


def test_extensions_run_by_priority_then_registration_order():
    log = []
    trainer = get_trainer_with_mock_updater((2, "iteration"))
    trainer.extend(_Recorder(log, "reader"), priority=training.PRIORITY_READER)
    trainer.extend(_Recorder(log, "writer"), priority=training.PRIORITY_WRITER)
    trainer.extend(_Recorder(log, "editor_a"), priority=training.PRIORITY_EDITOR)
    trainer.extend(_Recorder(log, "editor_b"), priority=training.PRIORITY_EDITOR)
    trainer.run()
    calls = [label for it, label in log if it == 1]
    assert calls == ["writer", "editor_a", "editor_b", "reader"]
    assert [label for it, label in log if it == "init"] == calls
    assert [label for it, label in log if it == "finalize"] == calls


def test_extension_trigger_decides_when_it_runs():
    log = []
    trainer = get_trainer_with_mock_updater((10, "iteration"), iter_per_epoch=4)
    trainer.extend(_Recorder(log, "every3"), trigger=(3, "iteration"))
    trainer.extend(_Recorder(log, "epoch"), trigger=(1, "epoch"))
    trainer.run()
    calls = [(it, label) for it, label in log if isinstance(it, int)]
    assert [it for it, label in calls if label == "every3"] == [3, 6, 9]
    assert [it for it, label in calls if label == "epoch"] == [4, 8]


def test_default_trigger_and_priority_come_from_the_extension():
    log = []
    trainer = get_trainer_with_mock_updater((4, "iteration"))
    ext = _Recorder(log, "x", trigger=(2, "iteration"))
    trainer.extend(ext)
    trainer.run()
    assert [it for it, label in log if isinstance(it, int)] == [2, 4]


def test_duplicate_names_get_ordinal_suffixes():
    trainer = get_trainer_with_mock_updater()
    exts = [_Recorder([], "x") for _ in range(3)]
    for ext in exts:
        trainer.extend(ext)
    assert [e.name for e in exts] == ["_Recorder", "_Recorder_1", "_Recorder_2"]
    assert trainer.get_extension("_Recorder_2") is exts[2]


def test_lambda_and_function_extensions():
    seen = []
    trainer = get_trainer_with_mock_updater((3, "iteration"))
    trainer.extend(lambda t: seen.append(t.updater.iteration), name="lam")

    @training.make_extension(trigger=(3, "iteration"), priority=999)
    def every_three(t):
        seen.append(("f", t.updater.iteration))

    trainer.extend(every_three)
    trainer.run()
    # priority 999 runs before the lambda (default PRIORITY_READER).
    assert seen == [1, 2, ("f", 3), 3]
    assert trainer.get_extension("every_three") is every_three


def test_call_before_training_runs_once_before_the_first_update():
    log = []
    trainer = get_trainer_with_mock_updater((2, "iteration"))
    trainer.extend(_Recorder(log, "x"), call_before_training=True)
    trainer.run()
    assert [it for it, label in log if isinstance(it, int)] == [0, 1, 2]


def test_initialize_is_skipped_when_trigger_is_finished():
    log = []
    trainer = get_trainer_with_mock_updater((2, "iteration"))
    trigger = training.triggers.ManualScheduleTrigger(1, "iteration")
    trigger.finished = True
    trainer.extend(_Recorder(log, "x"), trigger=trigger)
    trainer.run()
    assert ("init", "x") not in log


def test_on_error_then_finalize_then_exception_propagates(capsys):
    log = []

    class Failing(training.Extension):
        def __call__(self, trainer):
            if trainer.updater.iteration == 2:
                raise ZeroDivisionError("boom")

        def on_error(self, trainer, exc, tb):
            log.append(("on_error", type(exc).__name__, tb is not None))

        def finalize(self):
            log.append(("finalize",))

    trainer = get_trainer_with_mock_updater((5, "iteration"))
    trainer.extend(Failing())
    with pytest.raises(ZeroDivisionError, match="boom"):
        trainer.run()
    assert log == [("on_error", "ZeroDivisionError", True), ("finalize",)]
    assert trainer.updater.iteration == 2
    assert "boom" in capsys.readouterr().err


def test_run_twice_raises():
    trainer = get_trainer_with_mock_updater((1, "iteration"))
    trainer.run()
    with pytest.raises(RuntimeError, match="only once"):
        trainer.run()


def test_elapsed_time_and_is_before_training():
    trainer = get_trainer_with_mock_updater((3, "iteration"))
    with pytest.raises(RuntimeError):
        trainer.elapsed_time  # noqa: B018
    flags = []
    trainer.extend(
        lambda t: flags.append(t.is_before_training),
        call_before_training=True,
        name="flag",
    )
    trainer.run()
    assert flags == [True, False, False, False]
    assert trainer.elapsed_time >= 0


def test_observation_is_fresh_each_iteration():
    seen = []
    trainer = get_trainer_with_mock_updater((3, "iteration"))

    @training.make_extension(priority=training.PRIORITY_WRITER)
    def writer(t):
        training_report = __import__("ktrainer").report
        training_report({"it": t.updater.iteration})

    trainer.extend(writer)
    trainer.extend(lambda t: seen.append(dict(t.observation)), name="reader")
    trainer.run()
    assert seen == [{"it": 1}, {"it": 2}, {"it": 3}]


BAD_EXTEND = [
    ({"extension": 3}, TypeError, "extension"),
    ({"extension": lambda t: None, "name": "training"}, ValueError, "name"),
    ({"extension": lambda t: None, "trigger": (1, "epochs")}, ValueError, "unit"),
    ({"extension": lambda t: None, "trigger": (0, "epoch")}, ValueError, "period"),
    ({"extension": lambda t: None, "foo": 1}, TypeError, "foo"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    BAD_EXTEND,
    ids=["not-callable", "reserved-name", "bad-unit", "bad-period", "unknown-kwarg"],
)
def test_extend_rejects_bad_input(kwargs, error, names):
    trainer = get_trainer_with_mock_updater()
    with pytest.raises(error, match=names):
        trainer.extend(**kwargs)


def test_get_extension_unknown_name():
    trainer = get_trainer_with_mock_updater()
    with pytest.raises(ValueError, match="no extension named 'nope'"):
        trainer.get_extension("nope")


def test_trainer_rejects_non_updater():
    with pytest.raises(TypeError, match="updater"):
        training.Trainer(object())


def test_call_before_training_does_not_run_again_after_a_resume(tmp_path):
    from ktrainer.serializers import load_hdf5, save_hdf5

    first = get_trainer_with_mock_updater((3, "iteration"))
    first.extend(_Recorder([], "x"), call_before_training=True)
    first.run()
    path = str(tmp_path / "snap.h5")
    save_hdf5(path, first)
    log = []
    resumed = get_trainer_with_mock_updater((5, "iteration"))
    resumed.extend(_Recorder(log, "x"), call_before_training=True)
    load_hdf5(path, resumed)
    resumed.run()
    assert [it for it, _ in log if isinstance(it, int)] == [4, 5]


def test_extend_with_a_class_says_an_instance_is_expected():
    trainer = get_trainer_with_mock_updater()
    with pytest.raises(TypeError, match=r"instance.*LogReport\(\)"):
        trainer.extend(training.extensions.LogReport)


def test_out_naming_an_existing_file_is_named(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("")
    with pytest.raises(ValueError, match="out="):
        training.Trainer(get_trainer_with_mock_updater().updater, out=str(path))


def test_out_becoming_a_file_before_run_is_named(tmp_path):
    path = tmp_path / "later"
    trainer = training.Trainer(
        get_trainer_with_mock_updater().updater, (1, "iteration"), out=str(path)
    )
    path.write_text("")
    with pytest.raises(ValueError, match="out="):
        trainer.run()


def test_run_with_the_stop_trigger_already_fired_warns(tmp_path):
    from ktrainer.serializers import load_hdf5, save_hdf5

    path = str(tmp_path / "snap.h5")
    first = get_trainer_with_mock_updater((4, "iteration"))
    first.extend(_Recorder([], "x"))
    # Saved during the last iteration, as a snapshot extension does.
    first.extend(lambda t: save_hdf5(path, t), trigger=(4, "iteration"), name="s")
    first.run()
    log = []
    resumed = get_trainer_with_mock_updater((4, "iteration"))
    resumed.extend(_Recorder(log, "x"))
    resumed.extend(lambda t: None, trigger=(4, "iteration"), name="s")
    load_hdf5(path, resumed)
    with pytest.warns(UserWarning, match="stop trigger had already fired.*4"):
        resumed.run()
    assert resumed.updater.update_core_calls == 0
    assert [it for it, _ in log if isinstance(it, int)] == []


def test_finalizers_run_even_when_the_last_sync_raises():
    log = []
    trainer = get_trainer_with_mock_updater((2, "iteration"))

    def failing_sync():
        raise OSError("device lost")

    trainer.updater.sync_model_state = failing_sync
    trainer.extend(_Recorder(log, "x", needs_model_state=False))
    trainer.extend(_Recorder(log, "y", needs_model_state=False))
    with pytest.raises(OSError, match="device lost"):
        trainer.run()
    assert ("finalize", "x") in log
    assert ("finalize", "y") in log


@pytest.mark.parametrize(("stop", "at"), [((10, "iteration"), 12), ((1, "epoch"), 15)])
def test_run_past_the_training_length_trains_nothing_and_says_so(stop, at):
    # As after loading a snapshot taken beyond this run's length: an
    # interval trigger would only fire at its next multiple.
    trainer = get_trainer_with_mock_updater(stop_trigger=stop, iter_per_epoch=10)
    trainer.updater._set_iteration(at)
    trainer.stop_trigger._previous_iteration = at
    trainer.stop_trigger._previous_epoch_detail = at / 10
    with pytest.warns(UserWarning, match=rf"trained nothing.*iteration {at}"):
        trainer.run()
    assert trainer.updater.iteration == at
