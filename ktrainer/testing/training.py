"""A trainer with a counting updater, for testing triggers and extensions."""

from __future__ import annotations

import math

from ktrainer.training.trainer import Trainer
from ktrainer.training.updater import Updater


class _MockUpdater(Updater):
    """Counts iterations and epochs without training anything.

    Its bookkeeping follows `chainer.testing`'s mock updater exactly,
    including `is_new_epoch` being true before the first update.
    """

    def __init__(self, iter_per_epoch: float) -> None:
        self.iter_per_epoch = iter_per_epoch
        self.iteration = 0
        self.epoch = 0
        self.epoch_detail = 0
        self.is_new_epoch = True
        self.previous_epoch_detail = None
        self.update_core_calls = 0

    def update_core(self) -> None:
        self.update_core_calls += 1

    def update(self) -> None:
        self.update_core()
        self._set_iteration(self.iteration + 1)

    def _set_iteration(self, iteration: int) -> None:
        ipe = self.iter_per_epoch
        self.iteration = iteration
        self.epoch = iteration // ipe
        self.epoch_detail = iteration / ipe
        self.is_new_epoch = (iteration - 1) // ipe != self.epoch
        self.previous_epoch_detail = (iteration - 1) / ipe

    def epoch_progress(self) -> tuple[float, int]:
        """`epoch_detail` per iteration and updates until the epoch ends."""
        ipe = self.iter_per_epoch
        to_end = math.ceil((self.epoch + 1) * ipe - self.iteration)
        return 1 / ipe, max(1, to_end)

    def get_all_models(self) -> dict:
        return {}

    def get_all_optimizers(self) -> dict:
        return {}

    def serialize(self, serializer) -> None:
        iteration = serializer("iteration", self.iteration)
        if iteration != self.iteration:
            self._set_iteration(int(iteration))


def get_trainer_with_mock_updater(
    stop_trigger=(10, "iteration"), iter_per_epoch: float = 10, extensions=None
) -> Trainer:
    """Returns a `Trainer` whose updater only counts, as `chainer.testing` does.

    Useful for checking triggers and extensions without a model.

    Args:
        stop_trigger: when the trainer stops. Defaults to `(10, 'iteration')`.
        iter_per_epoch: iterations per epoch; may be fractional.
            Defaults to `10`.
        extensions: extensions to register. Defaults to `None`.
    """
    if not iter_per_epoch > 0:
        raise ValueError(
            "iter_per_epoch must be positive. "
            f"Received: iter_per_epoch={iter_per_epoch!r}"
        )
    updater = _MockUpdater(iter_per_epoch)
    return Trainer(updater, stop_trigger, extensions=extensions)
