"""`OnceTrigger`: fires on its first call only (optionally again on resume)."""

from __future__ import annotations

import math
import warnings
from typing import Any


class OnceTrigger:
    """Fires on the first call, and never again.

    Use it for an extension that must run once, at the first iteration of
    training. With `call_on_resume=True` it also fires once on the first
    call after the training is resumed from a snapshot.

    Args:
        call_on_resume: also fire once after a resume. Defaults to `False`.

    Attributes:
        finished: whether the trigger will never fire again; the trainer
            skips the extension's `initialize` on a resume when it is true.
    """

    def __init__(self, call_on_resume: bool = False) -> None:
        self._flag_first = True
        self._flag_resumed = bool(call_on_resume)

    @property
    def finished(self) -> bool:
        """Whether the trigger will never fire again."""
        return not (self._flag_first or self._flag_resumed)

    def __call__(self, trainer: Any) -> bool:
        """Returns `True` on the first call (and first after a resume)."""
        fire = not self.finished
        self._flag_first = False
        self._flag_resumed = False
        return fire

    def iterations_until_fire(self, trainer: Any) -> int | float:
        """1 until it has fired, then `math.inf` (it never fires again)."""
        return math.inf if self.finished else 1

    def serialize(self, serializer) -> None:
        """Saves or loads whether the first call has happened."""
        try:
            self._flag_first = serializer("_flag_first", self._flag_first)
        except KeyError:
            warnings.warn(
                "OnceTrigger: the snapshot has no '_flag_first'; the trigger "
                "assumes it already fired before the snapshot, so it will "
                "not fire again unless call_on_resume=True.",
                stacklevel=2,
            )
            self._flag_first = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(call_on_resume={self._flag_resumed})"
