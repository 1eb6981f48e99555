"""Backend-neutral pieces shared by the backend modules."""

from __future__ import annotations

import keras


def metric_reset_values(model) -> list:
    """The values of the model's metric variables right after a reset.

    Captured once so a step can restart metrics from them every batch
    without running each metric's `reset_state` in Python.
    """
    for metric in model.metrics:
        metric.reset_state()
    # Copies: on TensorFlow and torch `.value` is the live variable itself.
    return [
        keras.ops.convert_to_tensor(keras.ops.convert_to_numpy(v.value))
        for v in model.metrics_variables
    ]


def require_built(model, data) -> None:
    """Builds the model, its compiled loss/metrics and optimizer from a batch.

    `fit` does the same before its first step; variables must exist
    before a functional (JAX) step can capture them.
    """
    model._symbolic_build(data_batch=data)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def keras_logs(logs) -> dict:
    """Flattens `train_step` logs into a plain dict of tensors."""
    return dict(logs)


__all__ = ["keras", "keras_logs", "metric_reset_values", "require_built"]
