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
