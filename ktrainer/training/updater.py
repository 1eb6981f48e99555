"""The updater interface: what a trainer asks of its training step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class Updater:
    """Interface of the object that performs one training iteration.

    A `Trainer` calls `update()` once per iteration and reads `iteration`,
    `epoch`, `epoch_detail`, `previous_epoch_detail` and `is_new_epoch`
    for its triggers. Subclasses implement those plus the accessors below.
    """

    iteration: int = 0

    def connect_trainer(self, trainer) -> None:
        """Called by the trainer it is given to; a hook for setup."""

    def finalize(self) -> None:
        """Releases resources (e.g. iterator threads) after training."""

    def get_optimizer(self, name: str = "main") -> Any:
        """Returns the Keras optimizer registered as `name`."""
        raise NotImplementedError

    def get_all_optimizers(self) -> dict[str, Any]:
        """Returns a dict of every registered Keras optimizer by name."""
        raise NotImplementedError

    def get_model(self, name: str = "main") -> Any:
        """Returns the Keras model registered as `name`."""
        raise NotImplementedError

    def get_all_models(self) -> dict[str, Any]:
        """Returns a dict of every registered Keras model by name."""
        return {}

    def update(self) -> None:
        """Performs one training iteration."""
        raise NotImplementedError

    def sync_model_state(self) -> None:
        """Makes the Keras variables hold the current training state.

        Backends that keep training state outside the variables between
        steps (JAX) write it back here, without a copy; the trainer calls
        this before any extension that reads model or optimizer variables.
        Variables assigned after it take effect at the next step.
        """

    def model_state_written(self) -> None:
        """Tells the updater that model or optimizer variables were assigned.

        The trainer calls it after every extension that may assign
        variables (its `model_state` is `'write'` or `'read_write'`); for
        one that only writes (`'write'`, e.g. a learning-rate shift) it
        replaces the `sync_model_state()` before it. The next step takes
        the new values of exactly the variables that changed, and results
        of the latest step that describe the variables (the finite flags
        of `FailOnNonNumber`'s in-step check) are no longer trusted.
        """

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Lets `update()` leave training state outside the Keras variables.

        Outside this context every `update()` leaves the variables holding
        the updated weights (a notebook or a hand-written loop reads them).
        A `Trainer` runs its loop inside it and calls `sync_model_state()`
        itself whenever an extension needs the variables; the state is
        synced when the context exits.
        """
        yield

    def serialize(self, serializer) -> None:
        """Saves or loads the updater's state."""
        raise NotImplementedError
