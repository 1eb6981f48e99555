"""Keras interop: callbacks as extensions and extensions inside `fit`."""

__all__: list[str] = []
