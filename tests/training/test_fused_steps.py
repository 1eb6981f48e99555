"""`Trainer(max_fused_steps=...)`: fused runs keep Chainer's semantics.

The same training runs with 1, 7 and 64 fused steps: every extension must
fire at the same iterations, the log must have the same entries, and the
values must agree (the weights bit for bit on every backend here, since
the fused call runs the same step program over the same batches).
"""

from __future__ import annotations

import io
import os

import keras
import numpy as np
import pytest

import ktrainer
from ktrainer.iterators import SerialIterator
from ktrainer.serializers import load_hdf5
from ktrainer.training import extensions, triggers

N, BATCH = 100, 8  # 12.5 iterations per epoch: batches span epochs


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return list(zip(x, y))


def _model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dropout(0.25, seed=3, name="drop"),
            keras.layers.Dense(2, name="logits"),
        ],
        name="net",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


class _CountingUpdater(ktrainer.StandardUpdater):
    """Counts the fused calls, to show that fusion really happened."""

    fused_calls = 0

    def update_many(self, steps):
        self.fused_calls += 1
        super().update_many(steps)


def _trainer(out, max_fused_steps, stop=(3, "epoch")):
    model = _model()
    iterator = SerialIterator(
        _data(),
        BATCH,
        order_sampler=ktrainer.iterators.ShuffleOrderSampler(np.random.RandomState(5)),
    )
    updater = _CountingUpdater(iterator, model)
    trainer = ktrainer.Trainer(
        updater, stop, out=str(out), max_fused_steps=max_fused_steps
    )
    fired: dict[str, list] = {}

    def recorder(name):
        def record(trainer):
            fired.setdefault(name, []).append(trainer.updater.iteration)

        record.__name__ = name
        return record

    trainer.extend(extensions.LogReport(trigger=(10, "iteration")))
    printed = io.StringIO()
    trainer.extend(
        extensions.PrintReport(["epoch", "iteration", "main/loss"], out=printed)
    )
    trainer.extend(extensions.ProgressBar(update_interval=9, out=io.StringIO()))
    trainer.extend(extensions.FailOnNonNumber())
    trainer.extend(
        extensions.MicroAverage(
            "main/accuracy", "main/loss", "main/ratio", trigger=(10, "iteration")
        )
    )
    trainer.extend(recorder("every7"), trigger=(7, "iteration"))
    trainer.extend(recorder("epoch"), trigger=(1, "epoch"))
    trainer.extend(recorder("half_epoch"), trigger=(0.5, "epoch"))
    trainer.extend(
        recorder("manual"),
        trigger=triggers.ManualScheduleTrigger([5, 23], "iteration"),
    )
    best = triggers.MinValueTrigger("main/loss", (5, "iteration"))
    trainer.extend(recorder("best"), trigger=best)
    return trainer, model, fired, printed


def _weights(model):
    return [keras.ops.convert_to_numpy(v) for v in model.weights]


def _run(tmp_path, steps):
    trainer, model, fired, printed = _trainer(tmp_path / f"fused{steps}", steps)
    trainer.run()
    log = trainer.get_extension("LogReport").log
    return trainer, _weights(model), fired, log, printed.getvalue()


@pytest.mark.parametrize("steps", [7, 64])
def test_fused_run_fires_and_logs_as_unfused(tmp_path, steps):
    base_trainer, base_weights, base_fired, base_log, base_text = _run(tmp_path, 1)
    trainer, weights, fired, log, text = _run(tmp_path, steps)

    assert base_trainer.updater.fused_calls == 0
    # Fused calls happened, and far fewer calls than iterations were made.
    assert trainer.updater.fused_calls > 0
    assert trainer.updater.iteration == base_trainer.updater.iteration == 38

    assert fired == base_fired
    assert sorted(fired) == ["best", "epoch", "every7", "half_epoch", "manual"]
    assert "main/ratio" in log[0]  # MicroAverage's sums cover every iteration
    assert [(e["epoch"], e["iteration"]) for e in log] == [
        (e["epoch"], e["iteration"]) for e in base_log
    ]
    for entry, base_entry in zip(log, base_log):
        assert sorted(entry) == sorted(base_entry)
        for key in entry:
            if key != "elapsed_time":
                np.testing.assert_allclose(entry[key], base_entry[key], rtol=1e-5)
    assert text.splitlines()[0] == base_text.splitlines()[0]
    assert len(text.splitlines()) == len(base_text.splitlines()) == 1 + len(log)
    for value, base in zip(weights, base_weights):
        np.testing.assert_allclose(value, base, rtol=1e-6, atol=1e-7)


def test_fused_run_resumes_exactly_from_a_mid_run_snapshot(tmp_path):
    trainer, model, _, _ = _trainer(tmp_path / "full", 64)
    trainer.extend(extensions.snapshot(), trigger=(20, "iteration"))
    trainer.run()
    snapshot = tmp_path / "full" / "snapshot_iter_20"
    assert snapshot.exists()
    expected = _weights(model)
    expected_log = trainer.get_extension("LogReport").log

    resumed, resumed_model, _, _ = _trainer(tmp_path / "resumed", 64)
    load_hdf5(str(snapshot), resumed)
    assert resumed.updater.iteration == 20
    resumed.run()
    for value, want in zip(_weights(resumed_model), expected):
        np.testing.assert_array_equal(value, want)
    log = resumed.get_extension("LogReport").log
    assert [e["iteration"] for e in log] == [e["iteration"] for e in expected_log]
    np.testing.assert_allclose(
        [e["main/loss"] for e in log], [e["main/loss"] for e in expected_log]
    )


def test_a_trigger_that_cannot_tell_keeps_the_run_unfused(tmp_path):
    trainer, _, _, _ = _trainer(tmp_path / "t", 64, stop=(20, "iteration"))
    trainer.extend(lambda t: None, name="timed", trigger=triggers.TimeTrigger(3600))
    trainer.run()
    assert trainer.updater.fused_calls == 0
    assert trainer.updater.iteration == 20


def test_custom_update_core_fuses_one_by_one_with_stacked_reports(tmp_path):
    """A subclass's own update_core still runs under fusion, exactly."""

    class Twice(ktrainer.StandardUpdater):
        def update_core(self):
            batch = self.converter(next(self.get_iterator()), self.device)
            self.step("main", batch)
            ktrainer.report({"main/extra": float(self.iteration)})

    logs = []
    for steps in (1, 16):
        model = _model()
        iterator = SerialIterator(_data(), BATCH, shuffle=False)
        trainer = ktrainer.Trainer(
            Twice(iterator, model),
            (24, "iteration"),
            out=str(tmp_path / f"c{steps}"),
            max_fused_steps=steps,
        )
        trainer.extend(extensions.LogReport(trigger=(12, "iteration")))
        trainer.run()
        logs.append(trainer.get_extension("LogReport").log)
    assert [e["main/extra"] for e in logs[0]] == [5.5, 17.5]
    assert [e["main/extra"] for e in logs[1]] == [5.5, 17.5]
    np.testing.assert_allclose(
        [e["main/loss"] for e in logs[1]], [e["main/loss"] for e in logs[0]], rtol=1e-5
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)],
)
def test_max_fused_steps_is_checked(tmp_path, value, error):
    model = _model()
    updater = ktrainer.StandardUpdater(SerialIterator(_data(), BATCH), model)
    with pytest.raises(error, match="max_fused_steps"):
        ktrainer.Trainer(updater, out=str(tmp_path), max_fused_steps=value)


def test_max_fused_steps_needs_an_updater_that_can_fuse(tmp_path):
    from ktrainer.testing import get_trainer_with_mock_updater

    updater = get_trainer_with_mock_updater().updater
    with pytest.raises(TypeError, match="update_many"):
        ktrainer.Trainer(updater, out=os.fspath(tmp_path), max_fused_steps=4)


def test_fail_on_non_number_in_a_fused_run_names_the_fused_range(tmp_path):
    model = _model()
    model.compile(
        optimizer=keras.optimizers.SGD(1e38),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    iterator = SerialIterator(_data(), BATCH, shuffle=False)
    trainer = ktrainer.Trainer(
        _CountingUpdater(iterator, model),
        (64, "iteration"),
        out=str(tmp_path),
        max_fused_steps=16,
    )
    trainer.extend(extensions.FailOnNonNumber())
    with pytest.raises(RuntimeError, match=r"diverged (at|between) iteration"):
        trainer.run(show_loop_exception_msg=False)
    assert trainer.updater.fused_calls > 0
