"""The TensorFlow seam runs train_step under one tf.function."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from conftest import make_classifier, make_dataset

from ktrainer._backend import TrainStep


def _batch(n=16):
    data = make_dataset(n)
    return (np.stack([x for x, _ in data]), np.array([y for _, y in data]))


def test_step_is_compiled_once_and_updates_in_place():
    model = make_classifier()
    step = TrainStep(model, model.optimizer)
    before = model.layers[0].kernel.numpy().copy()
    step(_batch())
    step(_batch())
    assert isinstance(step._fn, tf.types.experimental.PolymorphicFunction)
    assert step._fn.experimental_get_tracing_count() == 1
    assert not np.allclose(model.layers[0].kernel.numpy(), before)


def test_metrics_restart_every_batch():
    model = make_classifier()
    step = TrainStep(model, model.optimizer)
    step(_batch())
    step(_batch())
    counts = [v.numpy() for v in model.metrics_variables if v.name == "count"]
    assert counts
    assert all(c == 16 for c in counts)
