"""The Iterator base class."""

from __future__ import annotations

import pytest

from ktrainer.dataset import Iterator


class _Countdown(Iterator):
    def __init__(self, n: int) -> None:
        self.n = n
        self.finalized = False

    def __next__(self):
        if self.n == 0:
            raise StopIteration
        self.n -= 1
        return [self.n]

    def finalize(self):
        self.finalized = True


def test_subclass_iterates_with_next_alias():
    iterator = _Countdown(3)
    assert iter(iterator) is iterator
    assert iterator.next() == [2]
    assert list(iterator) == [[1], [0]]


def test_context_manager_finalizes_even_on_error():
    with pytest.raises(RuntimeError, match="boom"), _Countdown(1) as iterator:
        raise RuntimeError("boom")
    assert iterator.finalized


def test_base_defaults():
    iterator = Iterator()
    with pytest.raises(NotImplementedError, match="__next__"):
        next(iterator)
    assert iterator.finalize() is None
    assert iterator.serialize(object()) is None
