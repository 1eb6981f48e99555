"""Which step the updater gets: single-device unless the engine is distributed."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer import StandardUpdater
from ktrainer._backend import distribute
from ktrainer.iterators import SerialIterator


def test_single_device_without_distribution():
    model = make_classifier()
    assert distribute.train_step_class(model, model.optimizer) is None


@pytest.mark.backend("jax")
def test_jax_distribution_shards_and_never_fuses():
    distribution = keras.distribution.DataParallel(
        devices=keras.distribution.list_devices()[:1]
    )
    keras.distribution.set_distribution(distribution)
    try:
        model = make_classifier()
        step = distribute.make_train_step(model, model.optimizer)
        assert type(step).__name__ == "ShardedTrainStep"
        # A fused run would bypass the sharding: the updater must not see one.
        assert not hasattr(step, "run_many")
        assert callable(step.sync)
        updater = StandardUpdater(SerialIterator(make_dataset(16), 8), model)
        updater.update()
        updater.sync_model_state()
        assert all(np.isfinite(w).all() for w in model.get_weights())
    finally:
        keras.distribution.set_distribution(None)


@pytest.mark.backend("jax")
def test_fused_trainer_trains_as_unfused_under_a_distribution(tmp_out):
    from ktrainer import Trainer
    from ktrainer.training import extensions

    devices = keras.distribution.list_devices()[:1]
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices)
    )
    try:
        weights = []
        for fused in (1, 4):
            keras.utils.set_random_seed(0)
            model = make_classifier()
            it = SerialIterator(make_dataset(32), 8, shuffle=False)
            trainer = Trainer(
                StandardUpdater(it, model),
                (8, "iteration"),
                out=tmp_out,
                max_fused_steps=fused,
            )
            trainer.extend(extensions.LogReport(trigger=(4, "iteration")))
            trainer.run()
            log = trainer.get_extension("LogReport").log
            weights.append((model.get_weights(), [e["main/loss"] for e in log]))
        (w1, l1), (w4, l4) = weights
        np.testing.assert_allclose(l1, l4, rtol=1e-6)
        for a, b in zip(w1, w4):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    finally:
        keras.distribution.set_distribution(None)
