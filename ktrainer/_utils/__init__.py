"""Internal helpers shared across ktrainer; not part of the public API."""

from ktrainer._utils.lazy_import import (
    import_matplotlib,
    is_matplotlib_available,
)

__all__ = [
    "import_matplotlib",
    "is_matplotlib_available",
]
