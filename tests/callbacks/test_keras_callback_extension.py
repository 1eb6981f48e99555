"""Real Keras callbacks run by a Trainer behave as they do in `model.fit`."""

from __future__ import annotations

import csv
import importlib.util
import math
import os

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer.callbacks import KerasCallbackExtension
from ktrainer.iterators import SerialIterator
from ktrainer.training import Trainer, extensions
from ktrainer.training.extension import PRIORITY_WRITER, make_extension
from ktrainer.training.updaters import StandardUpdater

ITERS_PER_EPOCH = 4  # 64 examples, batches of 16


def _trainer(out, epochs=3, validation=True, lr=0.1):
    model = make_classifier(optimizer=keras.optimizers.SGD(lr))
    data = make_dataset()
    updater = StandardUpdater(SerialIterator(data, 16, shuffle=False), model)
    trainer = Trainer(updater, (epochs, "epoch"), out=out)
    if validation:
        valid = SerialIterator(data, 16, repeat=False, shuffle=False)
        trainer.extend(extensions.Evaluator(valid, model))
    return trainer, model


def _scripted_val_loss(values):
    """A writer that reports `values[epoch]` as the epoch's validation loss."""

    @make_extension(trigger=(1, "epoch"), priority=PRIORITY_WRITER)
    def write(trainer):
        trainer.observation["validation/main/loss"] = values[trainer.updater.epoch - 1]

    return write


def _weights_per_epoch(record):
    @make_extension(trigger=(1, "epoch"))
    def keep(trainer):
        record.append(trainer.updater.get_model().get_weights())

    return keep


def test_csv_logger_writes_the_log_report_means(tmp_out):
    trainer, _ = _trainer(tmp_out)
    trainer.extend(extensions.LogReport())
    path = os.path.join(tmp_out, "log.csv")
    trainer.extend(keras.callbacks.CSVLogger(path))
    trainer.run()

    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    log = trainer.get_extension("LogReport").log
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    for row, entry in zip(rows, log, strict=True):
        for name in ("loss", "accuracy"):
            assert float(row[name]) == pytest.approx(entry["main/" + name])
            val = float(row["val_" + name])
            assert val == pytest.approx(entry["validation/main/" + name])


def test_history_has_per_epoch_lists(tmp_out):
    trainer, _ = _trainer(tmp_out)
    history = keras.callbacks.History()
    trainer.extend(history)
    trainer.run()

    assert history.epoch == [0, 1, 2]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(values) == 3 for values in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_params_and_hook_order(tmp_out):
    trainer, _ = _trainer(tmp_out, epochs=2, validation=False)
    calls = []
    callback = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_begin=lambda epoch, logs: calls.append(f"epoch_begin {epoch}"),
        on_train_batch_begin=lambda batch, logs: calls.append(f"begin {batch}"),
        on_train_batch_end=lambda batch, logs: calls.append(f"end {batch}"),
        on_epoch_end=lambda epoch, logs: calls.append(f"epoch_end {epoch}"),
        on_train_end=lambda logs: calls.append("train_end"),
    )
    trainer.extend(callback)
    trainer.run()

    assert callback.params == {"epochs": 2, "steps": 4, "verbose": 0}
    assert callback.model is trainer.updater.get_model()
    batches = [f"{hook} {b}" for b in range(4) for hook in ("begin", "end")]
    assert calls == [
        "train_begin",
        "epoch_begin 0",
        *batches,
        "epoch_end 0",
        "epoch_begin 1",
        *batches,
        "epoch_end 1",
        "train_end",
    ]


def test_lambda_callback_gets_keras_logs(tmp_out):
    trainer, _ = _trainer(tmp_out, epochs=1)
    batch_logs, epoch_logs = [], []
    trainer.extend(
        keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: batch_logs.append(logs),
            on_epoch_end=lambda epoch, logs: epoch_logs.append(logs),
        )
    )
    trainer.run()

    assert len(batch_logs) == ITERS_PER_EPOCH
    assert all(isinstance(v, float) for v in batch_logs[0].values())
    assert {"loss", "accuracy"} <= set(batch_logs[0])
    mean_loss = np.mean([logs["loss"] for logs in batch_logs])
    assert epoch_logs[0]["loss"] == pytest.approx(mean_loss)
    assert {"val_loss", "val_accuracy"} <= set(epoch_logs[0])


def test_early_stopping_stops_and_restores_best_weights(tmp_out):
    trainer, model = _trainer(tmp_out, epochs=10, validation=False)
    trainer.extend(_scripted_val_loss([1.0, 0.5, 0.8, 0.9, 0.7, 0.6]))
    weights = []
    trainer.extend(_weights_per_epoch(weights))
    trainer.extend(keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True))
    trainer.run()

    # Best at epoch index 1; no improvement at 2 and 3: stops after epoch 3.
    assert trainer.updater.epoch == 4
    assert trainer.updater.iteration == 4 * ITERS_PER_EPOCH
    for restored, best in zip(model.get_weights(), weights[1], strict=True):
        np.testing.assert_array_equal(restored, best)
    assert not np.array_equal(model.get_weights()[0], weights[3][0])


def test_early_stopping_finalizes_other_extensions(tmp_out):
    trainer, _ = _trainer(tmp_out, epochs=10, validation=False)
    trainer.extend(_scripted_val_loss([1.0, 1.0, 1.0, 1.0]))
    trainer.extend(extensions.LogReport())
    trainer.extend(keras.callbacks.EarlyStopping(patience=1))
    trainer.run()

    assert trainer.updater.epoch == 2
    assert len(trainer.get_extension("LogReport").log) == 2


def _lr(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def test_reduce_lr_on_plateau_multiplies_the_learning_rate(tmp_out):
    trainer, model = _trainer(tmp_out, epochs=3, validation=False)
    trainer.extend(_scripted_val_loss([1.0, 1.0, 1.0]))
    trainer.extend(extensions.observe_lr())
    trainer.extend(extensions.LogReport())
    trainer.extend(keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=1))
    trainer.run()

    lrs = [entry["lr"] for entry in trainer.get_extension("LogReport").log]
    assert lrs == pytest.approx([0.1, 0.1, 0.05])
    assert _lr(model) == pytest.approx(0.025)


def test_learning_rate_scheduler_follows_the_schedule(tmp_out):
    trainer, model = _trainer(tmp_out, epochs=3, validation=False)
    trainer.extend(extensions.observe_lr())
    trainer.extend(extensions.LogReport())
    trainer.extend(keras.callbacks.LearningRateScheduler(lambda e, lr: 0.1 / (e + 1)))
    trainer.run()

    lrs = [entry["lr"] for entry in trainer.get_extension("LogReport").log]
    assert lrs == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert _lr(model) == pytest.approx(0.1 / 3)


def test_learning_rate_change_reaches_the_updates(tmp_out):
    trainer, model = _trainer(tmp_out, epochs=2, validation=False)
    weights = []
    trainer.extend(_weights_per_epoch(weights))
    trainer.extend(
        keras.callbacks.LearningRateScheduler(lambda e, lr: 0.0 if e else lr)
    )
    trainer.run()

    # The second epoch runs with a zero learning rate: no weight moves.
    for after, before in zip(model.get_weights(), weights[0], strict=True):
        np.testing.assert_array_equal(after, before)


def test_terminate_on_nan_stops_at_the_nan_iteration(tmp_out):
    trainer, _ = _trainer(tmp_out, epochs=5, validation=False)

    @make_extension(priority=PRIORITY_WRITER)
    def nan_at_6(trainer):
        if trainer.updater.iteration == 6:
            trainer.observation["main/loss"] = math.nan

    trainer.extend(nan_at_6)
    path = os.path.join(tmp_out, "log.csv")
    trainer.extend(keras.callbacks.TerminateOnNaN())
    trainer.extend(keras.callbacks.CSVLogger(path))
    trainer.run()

    assert trainer.updater.iteration == 6
    with open(path) as f:
        rows = list(csv.DictReader(f))
    # As in fit, the interrupted epoch still ends (with its partial logs).
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert math.isnan(float(rows[1]["loss"]))


def test_model_checkpoint_writes_one_file_per_epoch(tmp_out):
    trainer, model = _trainer(tmp_out, epochs=3, validation=False)
    pattern = os.path.join(tmp_out, "model_{epoch:02d}.weights.h5")
    trainer.extend(keras.callbacks.ModelCheckpoint(pattern, save_weights_only=True))
    trainer.run()

    assert sorted(f for f in os.listdir(tmp_out) if f.endswith(".h5")) == [
        "model_01.weights.h5",
        "model_02.weights.h5",
        "model_03.weights.h5",
    ]
    fresh = make_classifier()
    fresh.load_weights(pattern.format(epoch=3))
    for loaded, trained in zip(fresh.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(loaded, trained)


def test_tensorboard_writes_the_epoch_scalars(tmp_out):
    # Not skipped: every test env installs tensorboard, and Keras's callback
    # writes through tf.summary under every backend.
    for package in ("tensorboard", "tensorflow"):
        if importlib.util.find_spec(package) is None:
            pytest.fail(
                f"{package} is missing: Keras's TensorBoard callback writes "
                "through tf.summary under every backend, so each test env "
                "needs tensorboard and tensorflow-cpu"
            )
    from tensorboard.backend.event_processing import event_accumulator

    trainer, _ = _trainer(tmp_out, epochs=2)
    trainer.extend(extensions.LogReport(filename=None))
    log_dir = os.path.join(tmp_out, "tb")
    trainer.extend(keras.callbacks.TensorBoard(log_dir))
    trainer.run()

    log = trainer.get_extension("LogReport").log
    for subdir, prefix in (("train", "main/"), ("validation", "validation/main/")):
        events = event_accumulator.EventAccumulator(
            os.path.join(log_dir, subdir), size_guidance={"tensors": 0}
        )
        events.Reload()
        assert "epoch_loss" in events.Tags()["tensors"]
        losses = [
            float(event.tensor_proto.float_val[0])
            if event.tensor_proto.float_val
            else float(np.frombuffer(event.tensor_proto.tensor_content, "float32")[0])
            for event in events.Tensors("epoch_loss")
        ]
        assert [e.step for e in events.Tensors("epoch_loss")] == [0, 1]
        expected = [entry[prefix + "loss"] for entry in log]
        np.testing.assert_allclose(losses, expected, rtol=1e-5)


def test_backup_and_restore_is_refused(tmp_out):
    trainer, _ = _trainer(tmp_out, validation=False)
    with pytest.raises(TypeError, match=r"snapshot\(autoload=True\)"):
        trainer.extend(keras.callbacks.BackupAndRestore(tmp_out))


def test_non_callback_is_refused():
    with pytest.raises(
        TypeError, match=r"callback must be a keras\.callbacks\.Callback"
    ):
        KerasCallbackExtension(object())


def test_default_name_is_the_callback_class(tmp_out):
    trainer, _ = _trainer(tmp_out, validation=False)
    history = keras.callbacks.History()
    trainer.extend(history)
    wrapped = trainer.get_extension("History")
    assert isinstance(wrapped, KerasCallbackExtension)
    assert wrapped.callback is history


def _fit_csv_header(tmp_out, x, y, **fit_kwargs):
    path = os.path.join(tmp_out, "fit.csv")
    make_classifier().fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        verbose=0,
        callbacks=[keras.callbacks.CSVLogger(path)],
        **fit_kwargs,
    )
    with open(path) as f:
        return next(csv.reader(f))


def test_without_an_evaluator_callbacks_see_no_val_keys_as_in_fit(tmp_out):
    trainer, _ = _trainer(tmp_out, epochs=2, validation=False)
    seen = []
    trainer.extend(
        keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(logs))
    )
    path = os.path.join(tmp_out, "log.csv")
    trainer.extend(keras.callbacks.CSVLogger(path))
    trainer.run()

    # Only what was reported: no val_* key without an Evaluator.
    assert [sorted(logs) for logs in seen] == [["accuracy", "loss"]] * 2
    x, y = (np.stack(a) for a in zip(*make_dataset(), strict=True))
    with open(path) as f:
        rows = list(csv.reader(f))
    # CSVLogger itself adds `val_*` columns (of NA) when the first epoch has
    # none; `model.fit` without validation data writes the same file.
    assert rows[0] == _fit_csv_header(tmp_out, x, y)
    assert len(rows) == 3


def test_with_an_evaluator_the_columns_are_those_of_fit_with_validation(tmp_out):
    trainer, _ = _trainer(tmp_out, epochs=1)
    path = os.path.join(tmp_out, "log.csv")
    trainer.extend(keras.callbacks.CSVLogger(path))
    trainer.run()
    x, y = (np.stack(a) for a in zip(*make_dataset(), strict=True))
    with open(path) as f:
        header, row = list(csv.reader(f))
    assert header == _fit_csv_header(tmp_out, x, y, validation_data=(x, y))
    assert "NA" not in row


def test_steps_follow_an_order_longer_than_the_dataset(tmp_out):
    model = make_classifier()

    def oversample(order, position):  # 64 examples, 96 draws per epoch
        return np.concatenate([np.arange(64), np.arange(32)])

    iterator = SerialIterator(make_dataset(), 16, order_sampler=oversample)
    trainer = Trainer(StandardUpdater(iterator, model), (2, "epoch"), out=tmp_out)
    ends = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(batch)
    )
    trainer.extend(callback)
    trainer.run()
    assert callback.params["steps"] == 6
    assert ends == [0, 1, 2, 3, 4, 5] * 2
