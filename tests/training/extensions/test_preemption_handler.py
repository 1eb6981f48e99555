"""PreemptionHandler: a signal ends the iteration, writes a snapshot, exits.

The signals are raised in this process (`signal.raise_signal`) by an
extension at a chosen iteration; tests/test_crash_resume.py sends one from
outside to a subprocess.
"""

from __future__ import annotations

import math
import os
import signal
import threading

import keras
import numpy as np
import pytest
from _resume_script import build_trainer, state_arrays
from conftest import make_classifier, make_dataset

from ktrainer.callbacks import ExtensionsCallback
from ktrainer.serializers import load_hdf5
from ktrainer.training import PRIORITY_WRITER, make_extension
from ktrainer.training.extensions import (
    PreemptionHandler,
    snapshot,
    snapshot_object,
    snapshot_writers,
)

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGUSR1"), reason="needs POSIX signals"
)


def _raise_at(iteration: int, signum=signal.SIGTERM, times: int = 1):
    @make_extension(
        trigger=(1, "iteration"), priority=PRIORITY_WRITER, needs_model_state=False
    )
    def send_signal(trainer):
        if trainer.updater.iteration == iteration:
            for _ in range(times):
                signal.raise_signal(signum)

    return send_signal


def _preemptible(out, stop, signals=signal.SIGTERM, writer=None, seed=0):
    trainer = build_trainer(out, stop, seed=seed)
    snap = snapshot(autoload=True, n_retains=2, writer=writer)
    trainer.extend(snap, trigger=(4, "iteration"))
    handler = PreemptionHandler(snap, signals=signals)
    trainer.extend(handler)
    return trainer, snap, handler


def test_sigterm_snapshots_the_iteration_exits_143_and_resumes_exactly(tmp_path):
    out = str(tmp_path / "result")
    before = signal.getsignal(signal.SIGTERM)
    trainer, _, handler = _preemptible(out, 10)
    trainer.extend(_raise_at(6))

    with pytest.raises(SystemExit) as info:
        trainer.run()

    assert info.value.code == 128 + signal.SIGTERM == 143
    assert handler.received == signal.SIGTERM
    assert trainer.updater.iteration == 6  # the iteration completed, no more
    assert sorted(os.listdir(out)) == ["snapshot_iter_4", "snapshot_iter_6"]
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored

    resumed, snap, _ = _preemptible(out, 10, seed=7)
    resumed.run()
    assert snap.loaded_from == os.path.join(out, "snapshot_iter_6")

    straight = build_trainer(str(tmp_path / "straight"), 10)
    straight.run()
    expected, actual = state_arrays(straight), state_arrays(resumed)
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


def test_no_second_snapshot_when_the_periodic_one_ran(tmp_path):
    out = str(tmp_path / "result")
    calls = []

    class Counting(snapshot_writers.SimpleWriter):
        def __call__(self, filename, outdir, target):
            calls.append(filename)
            super().__call__(filename, outdir, target)

    trainer, _, _ = _preemptible(out, 10, signals="SIGUSR1", writer=Counting())
    trainer.extend(_raise_at(4, signal.SIGUSR1))
    with pytest.raises(SystemExit) as info:
        trainer.run()
    assert info.value.code == 128 + signal.SIGUSR1
    assert calls == ["snapshot_iter_4"]


def test_thread_writer_file_is_on_disk_before_exit(tmp_path):
    out = str(tmp_path / "result")
    trainer, _, _ = _preemptible(
        out, 10, signals=["USR1"], writer=snapshot_writers.ThreadWriter()
    )
    trainer.extend(_raise_at(3, signal.SIGUSR1))
    with pytest.raises(SystemExit):
        trainer.run()
    fresh = build_trainer(out, 10, seed=7)
    load_hdf5(os.path.join(out, "snapshot_iter_3"), fresh)
    assert fresh.updater.iteration == 3


def test_custom_exit_code_and_no_signal_means_no_effect(tmp_path):
    trainer = build_trainer(str(tmp_path / "a"), 5)
    snap = snapshot()
    trainer.extend(snap, trigger=(100, "iteration"))
    trainer.extend(PreemptionHandler(snap, signals=signal.SIGUSR1, exit_code=0))
    trainer.run()  # no signal: trains to the end, writes nothing
    assert os.listdir(tmp_path / "a") == []

    trainer = build_trainer(str(tmp_path / "b"), 5)
    snap = snapshot()
    trainer.extend(snap, trigger=(100, "iteration"))
    trainer.extend(PreemptionHandler(snap, signals=signal.SIGUSR1, exit_code=0))
    trainer.extend(_raise_at(2, signal.SIGUSR1))
    with pytest.raises(SystemExit) as info:
        trainer.run()
    assert info.value.code == 0
    assert os.listdir(tmp_path / "b") == ["snapshot_iter_2"]


def test_a_second_signal_goes_to_the_previous_handler(tmp_path):
    received = []
    previous = signal.signal(
        signal.SIGUSR1, lambda signum, frame: received.append(signum)
    )
    try:
        trainer, _, _ = _preemptible(str(tmp_path), 10, signals="SIGUSR1")
        trainer.extend(_raise_at(2, signal.SIGUSR1, times=2))
        with pytest.raises(SystemExit):
            trainer.run()
        assert received == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_inside_model_fit_through_extensions_callback(tmp_path):
    keras.utils.set_random_seed(0)
    model = make_classifier()
    x = np.stack([e[0] for e in make_dataset()])
    y = np.stack([e[1] for e in make_dataset()])
    snap = snapshot_object(model, "model_{.updater.iteration}.h5")
    callback = ExtensionsCallback(out=str(tmp_path))
    callback.extend(snap, trigger=(100, "iteration"))
    callback.extend(PreemptionHandler(snap, signals="SIGUSR1"))
    callback.extend(_raise_at(3, signal.SIGUSR1))

    with pytest.raises(SystemExit) as info:
        model.fit(x, y, batch_size=8, epochs=5, callbacks=[callback], verbose=0)

    assert info.value.code == 128 + signal.SIGUSR1
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 3  # stopped
    assert os.listdir(tmp_path) == ["model_3.h5"]
    fresh = make_classifier()
    load_hdf5(tmp_path / "model_3.h5", fresh)
    for expected, actual in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(actual, expected)


def test_outside_the_main_thread_is_an_error(tmp_path):
    trainer = build_trainer(str(tmp_path), 3)
    snap = snapshot()
    trainer.extend(snap)
    trainer.extend(PreemptionHandler(snap))
    errors = []

    def run():
        try:
            trainer.run(show_loop_exception_msg=False)
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=run, name="worker")
    thread.start()
    thread.join(timeout=120)
    assert len(errors) == 1
    assert "main thread" in str(errors[0])
    assert "'worker'" in str(errors[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"snapshot": "snap"}, TypeError, "snapshot must be the extension"),
        ({"signals": "SIGKILL"}, ValueError, "SIGKILL, which no process can catch"),
        ({"signals": "SIGNOPE"}, ValueError, "signals must name signals"),
        ({"signals": []}, ValueError, "at least one signal"),
        ({"signals": 1.5}, TypeError, "signals must be a signal number or name"),
        ({"signals": 10_000}, ValueError, "signals must name signals"),
        ({"exit_code": 256}, ValueError, "exit_code must be an int from 0 to 255"),
        ({"exit_code": True}, TypeError, "exit_code must be an int from 0 to 255"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    kwargs = {"snapshot": snapshot(), **kwargs}
    with pytest.raises(error, match=match):
        PreemptionHandler(**kwargs)


def test_signal_names_and_numbers_are_accepted():
    handler = PreemptionHandler(
        snapshot(), signals=["TERM", "sigusr1", signal.SIGUSR2, 15]
    )
    assert handler.signals == (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
    assert PreemptionHandler.priority < snapshot().priority
    assert PreemptionHandler.needs_model_state is False


def test_fused_iterations_are_not_unfused_by_the_handler(tmp_path):
    handler = PreemptionHandler(snapshot())
    assert handler.iterations_until_fire(None) == math.inf
    handler.received = signal.SIGTERM
    assert handler.iterations_until_fire(None) == 1


def test_a_fused_run_stops_at_the_end_of_its_run(tmp_path):
    out = str(tmp_path / "result")
    trainer = build_trainer(out, 12)
    trainer.max_fused_steps = 4
    snap = snapshot()
    trainer.extend(snap, trigger=(100, "iteration"))
    trainer.extend(PreemptionHandler(snap, signals="SIGUSR1"))

    @make_extension(trigger=(3, "iteration"), needs_model_state=False)
    def send_signal(trainer):
        if trainer.updater.iteration == 6:
            signal.raise_signal(signal.SIGUSR1)

    trainer.extend(send_signal)
    fused_runs = []
    update_many = trainer.updater.update_many

    def recording(steps):
        fused_runs.append(steps)
        return update_many(steps)

    trainer.updater.update_many = recording
    with pytest.raises(SystemExit):
        trainer.run()
    assert trainer.updater.iteration == 6
    assert os.listdir(out) == ["snapshot_iter_6"]
    assert fused_runs  # the handler left the run fused
