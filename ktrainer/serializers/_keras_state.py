"""Keras models, layers and optimizers <-> the serialization protocol.

Keras objects have no `serialize` method; their state is their variables.
A model's or layer's variables are stored under their `variable.path`
(`'classifier/hidden/kernel'`), so a snapshot reads like the model. Two
exceptions keep the names stable across processes, where Keras numbers
auto-generated names:

- A seed generator's state (Dropout and other random layers) is named by
  the layer that owns it, `'<model>/<layer>/seed_generator_state'`,
  instead of its own auto-numbered `'seed_generator_3/...'` path.
- An optimizer's variables drop the optimizer's name (`'adam_1/'`) from
  their path: `'iteration'`, `'learning_rate'`,
  `'classifier_hidden_kernel_momentum'`. The serializer group the
  optimizer is written to already says which optimizer it is.
"""

from __future__ import annotations

from typing import Any

import keras

from ktrainer.serializers._base import Deserializer


def _seed_state_keys(layer, prefix: str, keys: dict[int, str], seen: set[int]) -> None:
    if id(layer) in seen:
        return
    seen.add(id(layer))
    for index, generator in enumerate(getattr(layer, "_seed_generators", ())):
        name = "seed_generator_state" if index == 0 else f"seed_generator_{index}_state"
        keys.setdefault(id(generator.state), f"{prefix}/{name}")
    for child in layer._flatten_layers(include_self=False, recursive=False):
        _seed_state_keys(child, f"{prefix}/{child.name}", keys, seen)


def _unique(entries: list[tuple[str, Any]], obj: Any) -> list[tuple[str, Any]]:
    names: set[str] = set()
    for key, _ in entries:
        if key in names:
            raise ValueError(
                f"obj has two variables with the path {key!r}, so they cannot "
                "be told apart in a snapshot; give its layers distinct names. "
                f"Received: obj={obj.name!r}"
            )
        names.add(key)
    return entries


def layer_entries(layer: keras.layers.Layer) -> list[tuple[str, keras.Variable]]:
    """Returns `(key, variable)` for every variable of a model or layer."""
    seed_keys: dict[int, str] = {}
    _seed_state_keys(layer, layer.name, seed_keys, set())
    entries = [(seed_keys.get(id(v), v.path), v) for v in layer.variables]
    return _unique(entries, layer)


def optimizer_entries(
    optimizer: keras.optimizers.Optimizer,
) -> list[tuple[str, keras.Variable]]:
    """Returns `(key, variable)` for every variable of an optimizer."""
    prefix = optimizer.name + "/"
    entries = [
        (v.path[len(prefix) :] if v.path.startswith(prefix) else v.path, v)
        for v in optimizer.variables
    ]
    return _unique(entries, optimizer)


def _stored_keys(serializer) -> list[str] | None:
    """The entry names under `serializer`, relative to it; `None` if unknown."""
    list_keys = getattr(serializer, "_keys", None)
    if list_keys is None:
        return None
    prefix = serializer.path
    return [k[len(prefix) :] for k in list_keys()]


def _serialize_layer(layer: keras.layers.Layer, serializer) -> None:
    if isinstance(serializer, Deserializer) and not layer.built:
        stored = _stored_keys(serializer)
        if stored is None or stored:
            raise RuntimeError(
                f"obj must be built before its weights can be loaded, but model "
                f"{layer.name!r} has not been built; call it on a batch or start "
                "it with keras.Input. Received: obj.built=False"
            )
    for key, variable in layer_entries(layer):
        serializer(key, variable)


def _build_optimizer_for_load(optimizer, serializer, model) -> None:
    stored = _stored_keys(serializer)
    if stored is None:
        return
    current = {key for key, _ in optimizer_entries(optimizer)}
    slots = [k for k in stored if k not in current]
    if not slots:
        return
    if model is not None and model.built:
        optimizer.build(model.trainable_variables)
        return
    raise RuntimeError(
        f"obj must be built before its state can be loaded: optimizer "
        f"{optimizer.name!r} has no slot variables yet, but the file holds "
        f"{len(slots)} (e.g. {slots[0]!r}); call "
        "optimizer.build(model.trainable_variables) first, or pass model=. "
        "Received: obj.built=False"
    )


def _serialize_optimizer(optimizer, serializer, model) -> None:
    if isinstance(serializer, Deserializer) and not optimizer.built:
        # A compiled model's optimizer builds on its first step; slot
        # variables must exist before a snapshot can fill them.
        _build_optimizer_for_load(optimizer, serializer, model)
    for key, variable in optimizer_entries(optimizer):
        serializer(key, variable)


def serialize_object(obj: Any, serializer, *, model: keras.Model | None = None) -> None:
    """Saves or loads `obj` through `serializer`.

    An object with a `serialize(serializer)` method takes part through it
    (a Keras subclass may define one to add state). Otherwise, Keras models
    and layers save and load their variables (trainable, non-trainable and
    seed-generator states) keyed by `variable.path`; Keras optimizers save
    and load theirs, including `iteration` and a variable `learning_rate`
    (see the module docstring for the keys).

    Args:
        obj: the object to save or load.
        serializer: a `Serializer` or `Deserializer`.
        model: for an optimizer that is loaded before it was built, the
            model whose trainable variables it optimizes, so that its slot
            variables can be created first. Defaults to `None`.

    Raises:
        TypeError: if `obj` is none of the above.
        RuntimeError: if a model, layer or optimizer cannot hold the
            loaded state because it is not built.
    """
    if callable(getattr(obj, "serialize", None)):
        obj.serialize(serializer)
    elif isinstance(obj, keras.optimizers.Optimizer):
        _serialize_optimizer(obj, serializer, model)
    elif isinstance(obj, keras.layers.Layer):
        _serialize_layer(obj, serializer)
    else:
        raise TypeError(
            "obj must have a serialize(serializer) method or be a Keras model, "
            f"layer or optimizer. Received: obj of type {type(obj).__name__}"
        )
