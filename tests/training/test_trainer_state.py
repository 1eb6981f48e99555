"""Training state as extensions see it, with every kind of state access."""

from __future__ import annotations

import os

import keras
import numpy as np
from conftest import make_classifier, make_dataset

from ktrainer.iterators import SerialIterator
from ktrainer.serializers import load_hdf5, save_hdf5
from ktrainer.training import Trainer, extensions, make_extension
from ktrainer.training.updaters import StandardUpdater


def _np(x):
    return np.array(keras.ops.convert_to_numpy(x))


def test_an_evaluator_between_steps_sees_the_current_weights(tmp_out):
    model = make_classifier()
    data = make_dataset(16)
    updater = StandardUpdater(SerialIterator(make_dataset(32), 8), model)
    trainer = Trainer(updater, (4, "iteration"), out=tmp_out)
    trainer.extend(
        extensions.Evaluator(SerialIterator(data, 16, repeat=False), model),
        trigger=(2, "iteration"),
    )
    rows = []

    @make_extension(model_state="none", trigger=(2, "iteration"))
    def record(t):
        rows.append(float(_np(t.observation["validation/main/loss"])))

    trainer.extend(record)
    trainer.run()
    x, y = (np.stack(a) for a in zip(*data))
    expected = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert len(rows) == 2
    np.testing.assert_allclose(rows[-1], expected["loss"], rtol=1e-5)


def _trainer(out, stop, losses, save_at=None, path=None, seed=0):
    keras.utils.set_random_seed(seed)  # a different seed: what a load must fix
    model = make_classifier(optimizer=keras.optimizers.Adam(0.01))
    iterator = SerialIterator(make_dataset(40), 8, shuffle=True)
    trainer = Trainer(StandardUpdater(iterator, model), (stop, "iteration"), out=out)
    trainer.extend(extensions.observe_lr(), trigger=(1, "iteration"))
    trainer.extend(extensions.FailOnNonNumber())
    trainer.extend(extensions.ExponentialShift("lr", 0.9))
    trainer.extend(extensions.ParameterStatistics(model), trigger=(2, "iteration"))
    trainer.extend(extensions.LogReport(trigger=(1, "iteration"), filename=None))

    def plain(t):  # a plain function: reads a weight, writes nothing
        losses.append(
            (float(_np(t.observation["main/loss"])), float(_np(model.weights[0][0, 0])))
        )

    trainer.extend(plain)
    if save_at is not None:
        trainer.extend(
            lambda t: save_hdf5(path, t), trigger=(save_at, "iteration"), name="save"
        )
    else:
        trainer.extend(lambda t: None, trigger=(1000, "iteration"), name="save")
    return trainer, model


def test_exact_resume_with_every_kind_of_extension_attached(tmp_path):
    out = str(tmp_path)
    straight_losses: list = []
    straight, model = _trainer(out, 8, straight_losses)
    straight.run()

    path = os.path.join(out, "mid.h5")
    losses: list = []
    first, _ = _trainer(out, 3, losses, save_at=3, path=path)
    first.run()
    second, resumed_model = _trainer(out, 8, losses, seed=7)
    load_hdf5(path, second)
    second.run()

    assert losses == straight_losses
    for a, b in zip(model.weights, resumed_model.weights):
        np.testing.assert_array_equal(_np(a), _np(b))
    log = second.get_extension("LogReport").log
    # observe_lr (a writer) runs before the shift of the same iteration.
    np.testing.assert_allclose(float(log[-1]["lr"]), 0.01 * 0.9**7, rtol=1e-6)
