"""`StandardUpdater.minimize`: one compiled step of one model, on every backend."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import make_dataset

import ktrainer
from ktrainer.dataset import TupleDataset
from ktrainer.iterators import SerialIterator
from ktrainer.training import StandardUpdater, Trainer


def _np(x):
    return np.array(keras.ops.convert_to_numpy(x))


def _linear(n_in, n_out, name, seed):
    model = keras.Sequential(
        [
            keras.Input((n_in,)),
            keras.layers.Dense(n_out, use_bias=False, name=name + "_dense"),
        ],
        name=name,
    )
    rng = np.random.default_rng(seed)
    model.layers[0].kernel.assign(rng.normal(size=(n_in, n_out)).astype("float32"))
    return model


class _TwoModelUpdater(StandardUpdater):
    """Steps nothing by itself: the tests call `minimize` directly."""

    def update_core(self):
        pass


def _updater(models, lrs):
    iterator = SerialIterator(make_dataset(8), 4)
    optimizers = {name: keras.optimizers.SGD(lrs[name]) for name in models}
    return _TwoModelUpdater(iterator, optimizers, model=models)


def test_one_step_is_the_hand_computed_gradient_step_and_the_reader_is_not_stepped():
    a = _linear(3, 4, "a", 1)
    b = _linear(4, 2, "b", 2)
    updater = _updater({"a": a, "b": b}, {"a": 0.1, "b": 0.5})
    x = np.random.default_rng(3).normal(size=(5, 3)).astype("float32")
    wa, wb = _np(a.layers[0].kernel), _np(b.layers[0].kernel)

    def loss_func(x):
        return keras.ops.mean(keras.ops.square(b(a(x), training=True)))

    loss = updater.minimize("a", loss_func, x)

    y = x @ wa
    z = y @ wb
    assert keras.ops.is_tensor(loss)
    np.testing.assert_allclose(_np(loss), np.mean(z**2), rtol=1e-5)
    grad_a = x.T @ ((2 * z / z.size) @ wb.T)
    np.testing.assert_allclose(
        _np(a.layers[0].kernel), wa - 0.1 * grad_a, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(_np(b.layers[0].kernel), wb)
    assert int(_np(updater.get_optimizer("a").iterations)) == 1
    assert int(_np(updater.get_optimizer("b").iterations)) == 0


def test_a_model_read_in_the_loss_updates_its_batchnorm_statistics_only():
    a = _linear(3, 4, "a", 1)
    b = keras.Sequential(
        [keras.Input((4,)), keras.layers.BatchNormalization(name="bn")], name="b"
    )
    updater = _updater({"a": a, "b": b}, {"a": 0.1, "b": 0.5})
    bn = b.layers[0]
    gamma, mean = _np(bn.gamma), _np(bn.moving_mean)
    x = np.random.default_rng(3).normal(size=(16, 3)).astype("float32") + 2.0
    updater.minimize("a", lambda x: keras.ops.mean(b(a(x), training=True)), x)
    np.testing.assert_array_equal(_np(bn.gamma), gamma)
    assert not np.allclose(_np(bn.moving_mean), mean)


def test_reports_inside_the_loss_reach_the_observation():
    a = _linear(3, 4, "a", 1)
    b = _linear(4, 2, "b", 2)
    updater = _updater({"a": a, "b": b}, {"a": 0.1, "b": 0.1})
    trainer = Trainer(updater, (1, "iteration"))
    x = np.ones((2, 3), "float32")

    def loss_func(x):
        loss = keras.ops.sum(a(x))
        ktrainer.report({"twice": 2 * loss}, observer=a)
        ktrainer.report({"plain": loss})
        return loss

    observation = {}
    with trainer.reporter.scope(observation):
        loss = updater.minimize("a", loss_func, x)
    assert sorted(observation) == ["a/twice", "plain"]
    np.testing.assert_allclose(_np(observation["a/twice"]), 2 * _np(loss), rtol=1e-6)


def test_compiled_once_per_name_and_loss_func(backend_name):
    a = _linear(3, 4, "a", 1)
    b = _linear(4, 2, "b", 2)
    updater = _updater({"a": a, "b": b}, {"a": 0.1, "b": 0.1})
    calls = []

    def loss_func(x, scale=1.0):
        calls.append(1)
        return scale * keras.ops.mean(b(a(x)))

    x = np.ones((2, 3), "float32")
    for _ in range(5):
        updater.minimize("a", loss_func, x, scale=np.float32(2.0))
    if backend_name == "torch":
        assert len(calls) == 5  # eager: the Python loss runs every step
    else:
        assert len(calls) <= 2  # traced once (tensorflow may trace twice)
    assert int(_np(updater.get_optimizer("a").iterations)) == 5


def test_unknown_name_and_unbuilt_model_are_named():
    a = _linear(3, 4, "a", 1)
    unbuilt = keras.Sequential([keras.layers.Dense(2)], name="unbuilt")
    updater = _updater({"a": a, "b": unbuilt}, {"a": 0.1, "b": 0.1})
    with pytest.raises(KeyError, match="'c'"):
        updater.minimize("c", lambda: 0.0)
    with pytest.raises(ValueError, match="model 'b' must be built"):
        updater.minimize("a", lambda x: keras.ops.sum(a(x)), np.ones((1, 3)))


class GANUpdater(StandardUpdater):
    """Two minimize calls per batch, as a DCGAN's updater makes them."""

    def update_core(self):
        (x,) = self.converter(next(self.get_iterator()), self.device)
        z = np.random.default_rng(self.iteration).normal(size=(len(x), 2))
        z = z.astype("float32")
        gen, dis = self.get_model("gen"), self.get_model("dis")
        self.minimize("dis", self.loss_dis, gen, dis, x, z)
        self.minimize("gen", self.loss_gen, gen, dis, z)

    @staticmethod
    def loss_dis(gen, dis, x, z):
        real = dis(x, training=True)
        fake = dis(gen(z, training=True), training=True)
        loss = keras.ops.mean(keras.ops.softplus(-real)) + keras.ops.mean(
            keras.ops.softplus(fake)
        )
        ktrainer.report({"loss": loss}, observer=dis)
        return loss

    @staticmethod
    def loss_gen(gen, dis, z):
        fake = dis(gen(z, training=True), training=True)
        loss = keras.ops.mean(keras.ops.softplus(-fake))
        ktrainer.report({"loss": loss}, observer=gen)
        return loss


def test_a_gan_updater_with_two_minimize_calls_trains_both_models(tmp_out):
    gen = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(4, name="g")], name="generator"
    )
    dis = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", name="d1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dense(1, name="d2"),
        ],
        name="discriminator",
    )
    data = np.random.default_rng(0).normal(size=(32, 4)).astype("float32") + 3.0
    iterator = SerialIterator(TupleDataset(data), 8)
    updater = GANUpdater(
        iterator,
        {"gen": keras.optimizers.Adam(1e-2), "dis": keras.optimizers.Adam(1e-2)},
        model={"gen": gen, "dis": dis},
    )
    trainer = Trainer(updater, (6, "iteration"), out=tmp_out)
    rows = []

    def record(t):
        rows.append({k: float(_np(v)) for k, v in t.observation.items()})

    record.needs_model_state = False
    trainer.extend(record, name="record")
    g0, d0 = _np(gen.layers[0].kernel), _np(dis.layers[0].kernel)
    trainer.run()
    assert len(rows) == 6
    assert all(sorted(r) == ["dis/loss", "gen/loss"] for r in rows)
    assert all(np.isfinite(list(r.values())).all() for r in rows)
    assert not np.allclose(_np(gen.layers[0].kernel), g0)
    assert not np.allclose(_np(dis.layers[0].kernel), d0)
    assert int(_np(updater.get_optimizer("gen").iterations)) == 6
    assert int(_np(updater.get_optimizer("dis").iterations)) == 6
