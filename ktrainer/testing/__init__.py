"""Helpers for testing code built on ktrainer."""

from ktrainer.testing.training import get_trainer_with_mock_updater

__all__ = ["get_trainer_with_mock_updater"]
