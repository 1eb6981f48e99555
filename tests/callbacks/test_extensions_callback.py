"""ktrainer extensions inside `model.fit` see what they see in a Trainer."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer.callbacks import ExtensionsCallback
from ktrainer.iterators import SerialIterator
from ktrainer.training import Trainer, extensions
from ktrainer.training.updaters import StandardUpdater

LOG_KEYS = {
    "epoch",
    "iteration",
    "elapsed_time",
    "main/loss",
    "main/accuracy",
    "validation/main/loss",
    "validation/main/accuracy",
}


def _arrays():
    x, y = zip(*make_dataset(), strict=True)
    return np.stack(x), np.array(y)


def _fit(callback, epochs=3, **fit_kw):
    model = make_classifier()
    x, y = _arrays()
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=epochs,
        shuffle=False,
        validation_data=(x, y),
        verbose=0,
        callbacks=[callback],
        **fit_kw,
    )
    return model, history


def _lr(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def test_log_report_keys_match_the_trainer(tmp_out, capsys):
    callback = ExtensionsCallback(
        [
            extensions.LogReport(),
            extensions.PrintReport(["epoch", "main/loss", "validation/main/loss"]),
        ],
        out=tmp_out,
    )
    _, history = _fit(callback)
    log = callback.get_extension("LogReport").log

    assert [set(entry) for entry in log] == [LOG_KEYS] * 3
    assert [entry["epoch"] for entry in log] == [1, 2, 3]
    assert [entry["iteration"] for entry in log] == [4, 8, 12]
    assert [e["validation/main/loss"] for e in log] == pytest.approx(
        history.history["val_loss"]
    )
    assert os.path.exists(os.path.join(tmp_out, "log"))
    assert "validation/main/loss" in capsys.readouterr().out

    # The same extensions in a Trainer log the same keys.
    model = make_classifier()
    data = make_dataset()
    trainer = Trainer(
        StandardUpdater(SerialIterator(data, 16, shuffle=False), model),
        (1, "epoch"),
        out=tmp_out,
    )
    valid = SerialIterator(data, 16, repeat=False, shuffle=False)
    trainer.extend(extensions.Evaluator(valid, model))
    trainer.extend(extensions.LogReport())
    trainer.run()
    assert set(trainer.get_extension("LogReport").log[0]) == set(log[0])


def test_learning_rate_follows_an_exponential_shift(tmp_out):
    callback = ExtensionsCallback(
        [extensions.LogReport(), extensions.observe_lr()], out=tmp_out
    )
    callback.extend(extensions.ExponentialShift("lr", 0.5), trigger=(1, "epoch"))
    model, _ = _fit(callback)

    lrs = [entry["lr"] for entry in callback.get_extension("LogReport").log]
    assert lrs == pytest.approx([0.1, 0.05, 0.025])
    assert _lr(model) == pytest.approx(0.0125)


def test_stop_trigger_ends_fit_early(tmp_out):
    callback = ExtensionsCallback(
        [extensions.LogReport(trigger=(1, "iteration"))],
        out=tmp_out,
        stop_trigger=(6, "iteration"),
    )
    _, history = _fit(callback, epochs=5)

    assert len(history.epoch) == 2
    log = callback.get_extension("LogReport").log
    assert [entry["iteration"] for entry in log] == [1, 2, 3, 4, 5, 6]


def test_epoch_detail_and_new_epoch_follow_fit(tmp_out):
    seen = []

    def record(trainer):
        updater = trainer.updater
        seen.append((updater.iteration, updater.epoch_detail, updater.is_new_epoch))

    callback = ExtensionsCallback([record], out=tmp_out)
    _fit(callback, epochs=2)

    assert seen == [
        (1, 0.25, False),
        (2, 0.5, False),
        (3, 0.75, False),
        (4, 1.0, True),
        (5, 1.25, False),
        (6, 1.5, False),
        (7, 1.75, False),
        (8, 2.0, True),
    ]


@pytest.mark.skip_backend("torch", "Keras supports steps_per_execution=1 only")
def test_steps_per_execution_counts_steps(tmp_out):
    callback = ExtensionsCallback([extensions.LogReport()], out=tmp_out)
    model = make_classifier(steps_per_execution=2)
    x, y = _arrays()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])

    log = callback.get_extension("LogReport").log
    assert [entry["iteration"] for entry in log] == [4, 8]


def test_snapshot_object_writes_per_epoch(tmp_out):
    callback = ExtensionsCallback(out=tmp_out)
    model = make_classifier()
    callback.extend(
        extensions.snapshot_object(model, "model_epoch_{.updater.epoch}"),
        trigger=(1, "epoch"),
    )
    x, y = _arrays()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])

    assert sorted(os.listdir(tmp_out)) == ["model_epoch_1", "model_epoch_2"]


def test_extension_not_callable_is_refused():
    with pytest.raises(TypeError, match="extension must be callable"):
        ExtensionsCallback([object()])


def test_duplicate_names_get_suffixes():
    callback = ExtensionsCallback([extensions.LogReport(), extensions.LogReport()])
    assert isinstance(callback.get_extension("LogReport_1"), extensions.LogReport)
    with pytest.raises(ValueError, match="no extension named 'nope'"):
        callback.get_extension("nope")


def test_extensions_run_by_priority_then_registration(tmp_out):
    calls = []
    callback = ExtensionsCallback(out=tmp_out)
    callback.extend(lambda t: calls.append("reader"), name="reader", priority=100)
    callback.extend(lambda t: calls.append("writer"), name="writer", priority=300)
    callback.extend(lambda t: calls.append("reader2"), name="reader2", priority=100)
    _fit(callback, epochs=1)

    assert calls == ["writer", "reader", "reader2"] * 4


def test_an_extension_stops_fit_with_stop_training(tmp_out):
    def stop_at_iteration_5(trainer):
        if trainer.updater.iteration == 5:
            trainer.updater.get_model().stop_training = True

    callback = ExtensionsCallback(
        [extensions.LogReport(trigger=(1, "iteration")), stop_at_iteration_5],
        out=tmp_out,
    )
    _, history = _fit(callback, epochs=5)

    log = callback.get_extension("LogReport").log
    assert log[-1]["iteration"] == 5
    assert len(history.epoch) == 2


def test_progress_bar_reports_fit_progress(tmp_out):
    import io

    out = io.StringIO()
    callback = ExtensionsCallback(
        [
            extensions.ProgressBar(
                training_length=(3, "epoch"), update_interval=4, out=out
            )
        ],
        out=tmp_out,
    )
    _fit(callback, epochs=3)

    lines = out.getvalue().splitlines()
    assert [line.split(" iter,")[0].strip() for line in lines] == ["4", "8", "12"]
    assert "total 100.00%" in lines[-1]
    assert "\033" not in out.getvalue()  # a StringIO is not a terminal


def test_snapshot_holds_model_optimizer_and_counters(tmp_out):
    import h5py

    callback = ExtensionsCallback(out=tmp_out)
    callback.extend(extensions.snapshot(), trigger=(1, "epoch"))
    model, _ = _fit(callback, epochs=2)

    assert sorted(os.listdir(tmp_out)) == ["snapshot_iter_4", "snapshot_iter_8"]
    with h5py.File(os.path.join(tmp_out, "snapshot_iter_8"), "r") as f:
        assert int(f["updater/iteration"][()]) == 8
        assert int(f["updater/epoch"][()]) == 2
        kernel = model.layers[0].kernel
        np.testing.assert_array_equal(
            f["updater/model:main"][kernel.path][()],
            keras.ops.convert_to_numpy(kernel),
        )
        optimizer_group = f["updater/optimizer:main"]
        counter = model.optimizer.iterations.path.split("/")[-1]
        assert int(optimizer_group[counter][()]) == 8


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"extension": lambda t: None, "name": "training"}, ValueError, "reserved"),
        ({"extension": extensions.LogReport}, TypeError, "instance"),
    ],
    ids=["reserved-name", "a-class"],
)
def test_extend_checks_as_the_trainer_does(kwargs, error, match):
    callback = ExtensionsCallback()
    with pytest.raises(error, match=match):
        callback.extend(**kwargs)
    trainer = Trainer(
        StandardUpdater(SerialIterator(make_dataset(8), 4), make_classifier())
    )
    with pytest.raises(error, match=match):
        trainer.extend(**kwargs)


def test_a_keras_callback_is_refused_and_finalizers_run_after_fit(tmp_out):
    with pytest.raises(TypeError, match=r"model.fit\(callbacks"):
        ExtensionsCallback([keras.callbacks.History()])
    log = []
    ext = lambda t: None  # noqa: E731
    ext.finalize = lambda: log.append("finalize")
    callback = ExtensionsCallback([ext], out=tmp_out)
    model = make_classifier()
    x, y = (np.stack(a) for a in zip(*make_dataset(16)))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    assert log == ["finalize"]
