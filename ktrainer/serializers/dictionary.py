"""A serializer that collects state into a flat dict of numpy arrays."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ktrainer.serializers._base import Serializer
from ktrainer.serializers._reader import normalize_path
from ktrainer.serializers._values import NONE, to_storable

# `None` is stored as a zero-dimensional record of this dtype: a plain
# numpy array that `np.load(allow_pickle=False)` reads and that no number,
# string or array saved by a serializer can be mistaken for.
NONE_DTYPE = np.dtype([("ktrainer_none", "u1")])


class DictionarySerializer(Serializer):
    """Collects state into a dict of '/'-joined names to numpy arrays.

    This is how `save_npz` gathers what it writes; it is also handy for
    inspecting what an object saves. `None` becomes a small marker array
    that `NpzDeserializer` reads back as `None`, and strings become numpy
    unicode arrays. Keras variables are copied, so later training does
    not change the collected values.

    Args:
        target: the dict to fill; a new one when `None`. Defaults to `None`.
        path: the prefix of every name, e.g. `'updater/'`. Defaults to `''`.
    """

    def __init__(
        self, target: dict[str, np.ndarray] | None = None, path: str = ""
    ) -> None:
        if target is not None and not isinstance(target, dict):
            raise TypeError(
                f"target must be a dict or None. Received: target of type "
                f"{type(target).__name__}"
            )
        self.target = {} if target is None else target
        self.path = normalize_path(path)

    def __getitem__(self, key: str) -> DictionarySerializer:
        return DictionarySerializer(self.target, self.path + key.strip("/") + "/")

    def __call__(self, key: str, value: Any) -> Any:
        stored = to_storable(key, value)
        if stored is NONE:
            array = np.zeros((), dtype=NONE_DTYPE)
        elif isinstance(stored, str):
            array = np.asarray(stored)
        elif isinstance(value, keras.Variable) and not stored.flags.owndata:
            array = stored.copy()  # a view of the variable's buffer
        else:
            array = stored
        self.target[self.path + key.lstrip("/")] = array
        return value
