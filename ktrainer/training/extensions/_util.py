"""Small helpers shared by the reporting extensions."""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable
from typing import Any

import numpy as np


def write_text_atomically(path: str, text: str) -> None:
    """Writes `text` to `path` so readers see the old file or the new one.

    An interrupted write leaves the previous file intact (see
    `ktrainer.serializers._atomic.atomic_write`).
    """
    # Imported here: the serializers package is heavier (h5py) and is not
    # needed to import the extensions.
    from ktrainer.serializers._atomic import atomic_write

    with atomic_write(path) as temp, open(temp, "w", encoding="utf-8") as f:
        f.write(text)


def is_terminal(out: Any) -> bool:
    """Whether `out` is an interactive terminal that understands ANSI codes."""
    isatty = getattr(out, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except (ValueError, OSError):  # e.g. a closed stream
        return False


def as_str(value: Any) -> str:
    """A stored string, whether it comes back as `str`, bytes or an array."""
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def flush(out: Any) -> None:
    """Flushes `out` if it can be flushed."""
    flush_method = getattr(out, "flush", None)
    if flush_method is not None:
        flush_method()


def named_sublayers(layer: Any) -> list[tuple[str, Any]]:
    """`('/<name>[/<name>...]', sublayer)` pairs for all nested layers of `layer`.

    Registered as observers under the layer's own name, they let a
    sublayer's reports be named `'<layer name>/<sublayer path>/<key>'`, as
    the `Trainer` does for its models.
    """
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return []
    named = []
    for sublayer in flatten(include_self=False, recursive=False):
        path = "/" + sublayer.name
        named.append((path, sublayer))
        named.extend((path + sub, nested) for sub, nested in named_sublayers(sublayer))
    return named


def warn_missing_keys(
    what: str, wanted: Iterable[str], reported: Collection[str]
) -> None:
    """Warns once that some of the `wanted` keys were not `reported`.

    `PrintReport` and `PlotReport` call it at their first report: a key
    that is missing then is usually misspelt or never reported, and would
    otherwise only show as a blank column or an empty plot.
    """
    missing = [key for key in wanted if key not in reported]
    if missing:
        warnings.warn(
            f"{what} {missing} were not reported (misspelt, or reported by "
            "no extension?); they stay empty until they are. Reported keys: "
            f"{sorted(reported)}",
            stacklevel=3,
        )
