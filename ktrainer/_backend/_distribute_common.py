"""Backend-neutral checks shared by the data-parallel steps."""

from __future__ import annotations

import warnings

import keras


def _layers(model):
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=False))
    return list(getattr(model, "layers", ()))


def warn_unsynchronized_batch_norm(model, where: str) -> None:
    """Warns when `model` has BatchNormalization layers that are not synchronized.

    Each replica then normalizes with its own part of the batch, so the
    training differs from one device on the global batch.
    """
    names = [
        layer.name
        for layer in _layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
        and not getattr(layer, "synchronized", False)
    ]
    if not names:
        return
    hint = (
        "build them with BatchNormalization(synchronized=True) to share the statistics"
        if keras.config.backend() == "tensorflow"
        else "Keras synchronizes them only under the tensorflow backend"
    )
    warnings.warn(
        f"BatchNormalization layers {names} normalize each replica's part of the "
        f"batch with its own statistics under {where}, not with the global "
        f"batch's, so training differs from one device; {hint}.",
        UserWarning,
        stacklevel=4,
    )


# Methods of the single-device steps a data-parallel wrapper must not pass
# on: a fused run (`run_many`) would skip the sharding or averaging, so the
# updater runs single steps instead.
_NOT_DELEGATED = frozenset({"_inner", "run_many"})


def delegate(step, name: str):
    """`name` of the single-device step that `step` wraps, for `__getattr__`."""
    if name in _NOT_DELEGATED:
        raise AttributeError(name)
    return getattr(step._inner, name)


def batch_size(flat) -> int:
    """The batch size of a flat list of a batch's leaves (arrays share it).

    Leaves without a batch axis (`None`, Python numbers) do not count; a
    batch without arrays has size 0.
    """
    sizes = {int(x.shape[0]) for x in flat if len(getattr(x, "shape", ()) or ()) >= 1}
    if len(sizes) > 1:
        raise ValueError(
            "batch must have one batch size in all its arrays to be split "
            f"across replicas. Received: batch sizes {sorted(sizes)}"
        )
    return sizes.pop() if sizes else 0


def metrics_result(model, values) -> dict:
    """`model.get_metrics_result()` computed from given metric states.

    `values` are the values of `model.metrics_variables`, in that order
    (the states summed over replicas and processes); the model's own
    variables are left as they are.
    """
    mapping = list(zip(model.metrics_variables, values))
    with keras.StatelessScope(state_mapping=mapping):
        return dict(model.get_metrics_result())
