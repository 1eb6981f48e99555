"""Keras interop: callbacks as extensions and extensions inside `fit`."""

from ktrainer.callbacks.extensions_callback import ExtensionsCallback
from ktrainer.callbacks.keras_callback_extension import KerasCallbackExtension

__all__ = [
    "ExtensionsCallback",
    "KerasCallbackExtension",
]
