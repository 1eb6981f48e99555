"""The JAX seam keeps training state out of the Keras variables until sync."""

from __future__ import annotations

import jax
import keras
import numpy as np
from conftest import make_classifier, make_dataset

from ktrainer._backend import TrainStep
from ktrainer._backend.jax import TrainStep as JaxTrainStep


def _batch(n=16):
    data = make_dataset(n)
    return (np.stack([x for x, _ in data]), np.array([y for _, y in data]))


def test_selected_step_is_the_jax_one():
    assert TrainStep is JaxTrainStep


def test_state_is_functional_until_sync():
    model = make_classifier()
    step = TrainStep(model, model.optimizer)
    before = np.array(model.layers[0].kernel.value)
    logs = step(_batch())
    assert isinstance(logs["loss"], jax.Array)
    # The variable still holds the old value: no write-back per step.
    np.testing.assert_array_equal(np.array(model.layers[0].kernel.value), before)
    step.sync()
    assert not np.allclose(np.array(model.layers[0].kernel.value), before)


def test_variable_changes_after_sync_are_picked_up():
    model = make_classifier()
    step = TrainStep(model, model.optimizer)
    step(_batch())
    step.sync()
    model.optimizer.learning_rate = 0.0
    frozen = np.array(model.layers[0].kernel.value)
    step(_batch())
    step.sync()
    np.testing.assert_array_equal(np.array(model.layers[0].kernel.value), frozen)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2
