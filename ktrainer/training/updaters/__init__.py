"""Updaters: the objects that perform each training step."""

from ktrainer.training.updaters.standard_updater import StandardUpdater

__all__ = ["StandardUpdater"]
