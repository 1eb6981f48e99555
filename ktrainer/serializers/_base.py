"""The serialization protocol: `Serializer` and `Deserializer`.

An object with state implements `serialize(serializer)` and writes each
piece of state as `self.x = serializer('x', self.x)`; `serializer['child']`
gives the serializer of a sub-object. The same method then saves (with a
`Serializer`) and loads (with a `Deserializer`).
"""

from __future__ import annotations

import abc
from typing import Any


class _AbstractSerializer(abc.ABC):
    @abc.abstractmethod
    def __getitem__(self, key: str) -> _AbstractSerializer:
        """Returns the child serializer for the sub-object named `key`."""

    @abc.abstractmethod
    def __call__(self, key: str, value: Any) -> Any:
        """Saves or loads the entry `key`; see the subclasses."""


class Serializer(_AbstractSerializer):
    """Base class of serializers, which write state.

    `serializer(key, value)` stores `value` under `key` and returns `value`
    unchanged; `serializer[name]` returns the serializer of a sub-group.
    `isinstance(serializer, Serializer)` tells a `serialize` method that
    it is saving.
    """

    def save(self, obj: Any) -> None:
        """Writes the state of `obj` (see `serialize_object`)."""
        from ktrainer.serializers._keras_state import serialize_object

        serialize_object(obj, self)


class Deserializer(_AbstractSerializer):
    """Base class of deserializers, which read state.

    `deserializer(key, value)` returns the stored entry `key`: a numpy
    array `value` is filled in place and returned, a Keras variable is
    assigned and returned, `None` gets the stored array or scalar as is,
    and a Python scalar gets the stored value converted to its type.
    `isinstance(serializer, Deserializer)` tells a `serialize` method that
    it is loading.
    """

    def load(self, obj: Any) -> None:
        """Reads the state of `obj` (see `serialize_object`)."""
        from ktrainer.serializers._keras_state import serialize_object

        serialize_object(obj, self)
