"""Backend-neutral pieces shared by the backend modules."""

from __future__ import annotations

import sys

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


def float_weights(model) -> list:
    """The floating-point weights a step checks for NaN and Inf.

    Trainable then non-trainable, in the order of `model.weights`; the
    seed generators' integer states are left out.
    """
    return [
        v
        for v in [*model.trainable_variables, *model.non_trainable_variables]
        if keras.backend.is_float_dtype(v.dtype)
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


def minimize_variables(model, others) -> tuple[list, list, list]:
    """The variables a `Minimizer` of `model` touches, each once.

    Returns `(stepped, read, state)`: `model`'s trainable variables (the
    ones differentiated and stepped); the other models' trainable
    variables (read only); every model's non-trainable variables (read,
    and written back as a training call leaves them, e.g. BatchNorm
    statistics and seed generator states). A variable shared by several
    models (a combined GAN model) belongs to the first group it is in.
    """
    seen: set[int] = set()

    def unique(variables):
        kept = []
        for variable in variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                kept.append(variable)
        return kept

    stepped = unique(model.trainable_variables)
    read = unique(v for other in others for v in other.trainable_variables)
    state = unique(v for m in (model, *others) for v in m.non_trainable_variables)
    return stepped, read, state


def is_tf_dataset(source) -> bool:
    """Whether `source` is a `tf.data.Dataset` (without importing tensorflow)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(source, tf.data.Dataset)


def is_torch_loader(source) -> bool:
    """Whether `source` is a torch `DataLoader` or `IterableDataset`.

    Checked without importing torch: a source of that kind means the
    user's code already has.
    """
    data = sys.modules.get("torch.utils.data")
    return data is not None and isinstance(
        source, (data.DataLoader, data.IterableDataset)
    )


def detached(value):
    """`value` cut from torch's autograd graph; anything else unchanged.

    Only a torch tensor that requires grad keeps a graph alive after the
    step (jax and tensorflow values are plain immutable results).
    """
    if getattr(value, "requires_grad", False) and callable(
        getattr(value, "detach", None)
    ):
        return value.detach()
    return value


def is_array(value) -> bool:
    """Whether a `minimize` argument is data (traced) rather than static.

    Arrays and tensors are inputs of the compiled step; anything else (a
    model, a Python number, a string) is fixed when it is compiled, as
    `tf.function` treats Python values.
    """
    return (
        hasattr(value, "shape")
        and hasattr(value, "dtype")
        and not isinstance(value, keras.Variable)
    )


def check_built(models) -> None:
    """Raises unless every model has its variables (see `Minimizer`)."""
    for name, model in models.items():
        if not model.built:
            raise ValueError(
                f"model {name!r} must be built before it is trained with "
                "minimize(): give it a keras.Input or call "
                "model.build(input_shape) first, so its variables exist "
                "before the step is compiled. "
                f"Received: model[{name!r}]={model.name!r}, not built"
            )


__all__ = [
    "check_built",
    "detached",
    "is_array",
    "is_tf_dataset",
    "is_torch_loader",
    "keras",
    "keras_logs",
    "metric_reset_values",
    "minimize_variables",
    "require_built",
]
