"""StandardUpdater on real compiled Keras models, under every backend."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

import ktrainer
from ktrainer.iterators import SerialIterator
from ktrainer.training import StandardUpdater, Trainer


def _weights(model):
    return [keras.ops.convert_to_numpy(v.value).copy() for v in model.weights]


def _record(trainer, keys):
    rows = []

    def recorder(t):
        rows.append(
            {k: float(keras.ops.convert_to_numpy(t.observation[k])) for k in keys}
        )

    recorder.needs_model_state = False
    trainer.extend(recorder, name="recorder")
    return rows


def test_compiled_classifier_trains_and_loss_falls(tmp_out):
    model = make_classifier()
    it = SerialIterator(make_dataset(128), 16, shuffle=True)
    trainer = Trainer(StandardUpdater(it, model), (8, "epoch"), out=tmp_out)
    rows = _record(trainer, ["main/loss", "main/accuracy"])
    trainer.run()
    assert len(rows) == 8 * 128 // 16
    first = np.mean([r["main/loss"] for r in rows[:8]])
    last = np.mean([r["main/loss"] for r in rows[-8:]])
    assert last < 0.6 * first
    assert np.mean([r["main/accuracy"] for r in rows[-8:]]) > 0.8
    assert trainer.updater.epoch == 8
    assert trainer.updater.iteration == 64


def test_reported_values_are_the_batch_values_not_running_means(tmp_out):
    model = make_classifier()
    data = make_dataset(48)
    it = SerialIterator(data, 16, shuffle=False)
    updater = StandardUpdater(it, model)
    trainer = Trainer(updater, (3, "iteration"), out=tmp_out)
    expected = []
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def before_each_step(t):
        # Predict the next batch with the weights the step will start from.
        i = t.updater.iteration % 3
        x = np.stack([e[0] for e in data[16 * i : 16 * (i + 1)]])
        y = np.array([e[1] for e in data[16 * i : 16 * (i + 1)]])
        logits = keras.ops.convert_to_numpy(model(x))
        expected.append(
            (
                float(keras.ops.convert_to_numpy(loss_fn(y, logits))),
                float(np.mean(np.argmax(logits, axis=1) == y)),
            )
        )

    trainer.extend(before_each_step, call_before_training=True, name="before")
    rows = _record(trainer, ["main/loss", "main/accuracy"])
    trainer.run()
    for (loss, acc), row in zip(expected, rows):
        assert row["main/loss"] == pytest.approx(loss, rel=1e-4, abs=1e-5)
        assert row["main/accuracy"] == pytest.approx(acc)


def test_extensions_see_current_weights_every_iteration(tmp_out):
    model = make_classifier()
    it = SerialIterator(make_dataset(32), 8)
    trainer = Trainer(StandardUpdater(it, model), (3, "iteration"), out=tmp_out)
    kernels = []
    trainer.extend(
        lambda t: kernels.append(_weights(model)[0]), name="read", priority=500
    )
    initial = _weights(model)[0]
    trainer.run()
    assert len(kernels) == 3
    assert not np.allclose(kernels[0], initial)
    assert not np.allclose(kernels[1], kernels[0])
    np.testing.assert_array_equal(kernels[2], _weights(model)[0])


def test_learning_rate_set_by_an_extension_takes_effect(tmp_out):
    model = make_classifier()
    it = SerialIterator(make_dataset(32), 8)
    trainer = Trainer(StandardUpdater(it, model), (4, "iteration"), out=tmp_out)
    snapshots = []

    def freeze(t):
        t.updater.get_optimizer().learning_rate = 0.0
        snapshots.append(_weights(model))

    trainer.extend(freeze, trigger=(2, "iteration"), name="freeze")
    trainer.run()
    final = _weights(model)
    for a, b in zip(snapshots[0], final):
        np.testing.assert_array_equal(a, b)


def test_loss_func_with_optimizer_and_model(tmp_out):
    model = make_classifier()
    optimizer = keras.optimizers.SGD(0.1)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_func(x, y):
        loss = ce(y, model(x, training=True))
        ktrainer.report({"ce": loss, "double": 2 * loss}, model)
        return loss

    it = SerialIterator(make_dataset(64), 16)
    updater = StandardUpdater(it, optimizer, loss_func=loss_func, model=model)
    trainer = Trainer(updater, (6, "epoch"), out=tmp_out)
    rows = _record(trainer, ["main/loss", "main/ce", "main/double"])
    trainer.run()
    for row in rows:
        assert row["main/loss"] == pytest.approx(row["main/ce"])
        assert row["main/double"] == pytest.approx(2 * row["main/ce"], rel=1e-5)
    assert rows[-1]["main/loss"] < rows[0]["main/loss"]
    assert updater.get_optimizer("main") is optimizer
    assert updater.get_model() is model


def test_loss_func_with_dict_batches(tmp_out):
    model = make_classifier()
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    data = [{"x": x, "t": t} for x, t in make_dataset(32)]

    def loss_func(x, t):
        return ce(t, model(x))

    it = SerialIterator(data, 8)
    updater = StandardUpdater(
        it, keras.optimizers.SGD(0.1), loss_func=loss_func, model=model
    )
    trainer = Trainer(updater, (2, "iteration"), out=tmp_out)
    rows = _record(trainer, ["main/loss"])
    trainer.run()
    assert len(rows) == 2
    assert np.isfinite(rows[0]["main/loss"])


def test_dict_of_models_steps_main_and_exposes_all(tmp_out):
    main, other = make_classifier(), make_classifier()
    it = SerialIterator(make_dataset(32), 8)
    updater = StandardUpdater(it, {"main": main, "other": other})
    before = _weights(other)
    Trainer(updater, (2, "iteration"), out=tmp_out).run()
    assert set(updater.get_all_models()) == {"main", "other"}
    assert updater.get_optimizer("other") is other.optimizer
    for a, b in zip(before, _weights(other)):
        np.testing.assert_array_equal(a, b)


def test_loss_scale_gives_the_same_sgd_update(tmp_out):
    results = []
    for scale in (None, 128.0):
        keras.utils.set_random_seed(0)
        model = make_classifier()
        it = SerialIterator(make_dataset(32), 8)
        updater = StandardUpdater(it, model, loss_scale=scale)
        Trainer(updater, (3, "iteration"), out=tmp_out).run()
        results.append(_weights(model))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device", [None, -1, "cpu"], ids=["none", "minus1", "cpu"])
def test_device_on_host(device, tmp_out):
    model = make_classifier()
    it = SerialIterator(make_dataset(32), 8)
    updater = StandardUpdater(it, model, device=device)
    Trainer(updater, (2, "iteration"), out=tmp_out).run()
    assert updater.iteration == 2


BAD_ARGS = [
    ({"optimizer": "sgd"}, TypeError, "optimizer"),
    ({"optimizer": "uncompiled"}, ValueError, "compile"),
    ({"optimizer": "bare"}, TypeError, "model"),
    ({"iterator": [1, 2, 3]}, TypeError, "iterator"),
    ({"converter": 3}, TypeError, "converter"),
    ({"loss_scale": -1.0}, ValueError, "loss_scale"),
    ({"device": "tpu:banana"}, ValueError, "device"),
]


@pytest.mark.parametrize(
    ("override", "error", "match"),
    BAD_ARGS,
    ids=[
        "str-optimizer",
        "uncompiled",
        "bare-optimizer",
        "list-iterator",
        "converter",
        "loss-scale",
        "device",
    ],
)
def test_bad_arguments_are_named(override, error, match):
    kwargs = {
        "iterator": SerialIterator(make_dataset(16), 4),
        "optimizer": make_classifier(),
    }
    kwargs.update(override)
    if kwargs["optimizer"] == "uncompiled":
        kwargs["optimizer"] = keras.Sequential(
            [keras.Input((8,)), keras.layers.Dense(2)]
        )
    elif kwargs["optimizer"] == "bare":
        kwargs["optimizer"] = keras.optimizers.SGD()
    with pytest.raises(error, match=match):
        StandardUpdater(**kwargs)


def test_malformed_batch_is_named(tmp_out):
    data = [(np.zeros(8, "float32"), 0, 1.0, "extra")] * 8
    updater = StandardUpdater(SerialIterator(data, 4), make_classifier())
    with pytest.raises((ValueError, TypeError), match="batch"):
        Trainer(updater, (1, "iteration"), out=tmp_out).run()


@pytest.mark.parametrize("use_loss_func", [False, True], ids=["compiled", "loss_func"])
def test_update_outside_a_trainer_leaves_updated_weights_in_the_variables(
    use_loss_func,
):
    model = make_classifier()
    it = SerialIterator(make_dataset(32), 8)
    if use_loss_func:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        updater = StandardUpdater(
            it,
            keras.optimizers.SGD(0.1),
            model=model,
            loss_func=lambda x, y: loss(y, model(x)),
        )
    else:
        updater = StandardUpdater(it, model)
    before = _weights(model)
    updater.update()
    after_one = _weights(model)
    assert not np.allclose(before[0], after_one[0])
    updater.update()
    after_two = _weights(model)
    assert not np.allclose(after_one[0], after_two[0])
    # The variables are the state: a third step starts from them.
    model.trainable_variables[0].assign(np.zeros_like(after_two[0]))
    updater.update()
    assert not np.allclose(_weights(model)[0], after_two[0])


@pytest.mark.parametrize("access", ["read", "read_write"])
def test_an_extension_reading_state_sees_the_weights_after_the_latest_step(
    access, tmp_out
):
    model = make_classifier()
    it = SerialIterator(make_dataset(32), 8, shuffle=False)
    updater = StandardUpdater(it, model)
    trainer = Trainer(updater, (4, "iteration"), out=tmp_out)
    seen = []

    @ktrainer.training.make_extension(model_state=access)
    def read(t):
        seen.append(_weights(model))

    trainer.extend(read)
    initial = model.get_weights()
    trainer.run()
    # Replaying the same batches with fresh updates gives the same weights.
    replay_model = make_classifier()
    replay_model.set_weights(initial)
    replay = StandardUpdater(
        SerialIterator(make_dataset(32), 8, shuffle=False), replay_model
    )
    for weights in seen:
        replay.update()
        for a, b in zip(weights, _weights(replay_model)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("access", ["write", "read_write"])
def test_a_variable_an_extension_writes_takes_effect_at_the_next_step(access, tmp_out):
    model = make_classifier()
    it = SerialIterator(make_dataset(32), 8)
    trainer = Trainer(StandardUpdater(it, model), (5, "iteration"), out=tmp_out)
    kernels = []

    @ktrainer.training.make_extension(model_state=access, trigger=(2, "iteration"))
    def freeze(t):
        t.updater.get_optimizer().learning_rate.assign(0.0)

    @ktrainer.training.make_extension(model_state="read", priority=0)
    def read(t):
        kernels.append(_weights(model)[0])

    trainer.extend(freeze)
    trainer.extend(read)
    trainer.run()
    assert not np.allclose(kernels[0], kernels[1])  # learning before
    for later in kernels[2:]:
        np.testing.assert_array_equal(later, kernels[1])  # frozen from step 3


def test_model_state_must_be_a_known_access():
    with pytest.raises(ValueError, match="model_state must be one of"):
        ktrainer.training.make_extension(model_state="rw")


class _CountingLayer(keras.layers.Layer):
    """Counts how often its Python `call` runs (once per trace when compiled)."""

    calls = 0

    def call(self, x):
        type(self).calls += 1
        return x


@pytest.mark.parametrize("run_eagerly", [False, True], ids=["compiled", "eager"])
def test_the_step_honours_run_eagerly_as_fit_does(run_eagerly, backend_name):
    _CountingLayer.calls = 0
    model = keras.Sequential(
        [keras.Input((8,)), _CountingLayer(), keras.layers.Dense(3)], name="counted"
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=run_eagerly,
    )
    updater = StandardUpdater(SerialIterator(make_dataset(32), 8), model)
    for _ in range(6):
        updater.update()
    if run_eagerly or backend_name == "torch":  # torch's fit is eager too
        assert _CountingLayer.calls >= 6
    else:
        assert _CountingLayer.calls <= 3  # built, traced, then compiled


def _stacked_run(iterator_cls, converter=None, iterations=5):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).normal(size=(24, 8)).astype("float32")
    y = (np.arange(24) % 3).astype("int32")
    model = make_classifier(n_in=8)
    iterator = iterator_cls(ktrainer.dataset.TupleDataset(x, y), 5)
    kwargs = {} if converter is None else {"converter": converter}
    updater = StandardUpdater(iterator, model, **kwargs)
    for _ in range(iterations):
        updater.update()
    return [keras.ops.convert_to_numpy(w) for w in model.weights], iterator


def test_default_converter_path_trains_as_the_example_list_does():
    # The default converter takes the iterator's stacked arrays directly;
    # a converter of our own gets the list of examples, as in Chainer.
    seen = []

    def listing(batch, device=None):
        seen.append(type(batch))
        return ktrainer.dataset.concat_examples(batch, device)

    fast, _ = _stacked_run(SerialIterator)
    slow, _ = _stacked_run(SerialIterator, converter=listing)
    assert seen
    assert all(issubclass(t, list) for t in seen)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)


def test_an_iterator_subclass_with_its_own_next_is_called():
    class Counting(SerialIterator):
        calls = 0

        def __next__(self):
            Counting.calls += 1
            return super().__next__()

    _, iterator = _stacked_run(Counting, iterations=3)
    assert Counting.calls == 3
    assert iterator.current_position == 15 % 24
