"""SerialIterator: the batch it returns for each kind of dataset."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import make_classifier

from ktrainer.dataset import TupleDataset, concat_examples
from ktrainer.dataset._example_batch import ExampleBatch
from ktrainer.iterators import SerialIterator, ShuffleOrderSampler


def _arrays(n: int = 12):
    x = np.arange(n * 3, dtype="float32").reshape(n, 3)
    y = np.arange(n, dtype="int32") % 3
    return x, y


def _sampler(seed: int = 0) -> ShuffleOrderSampler:
    return ShuffleOrderSampler(np.random.RandomState(seed))


def test_tuple_dataset_of_arrays_gives_a_stacked_list_of_examples():
    x, y = _arrays()
    batch = next(SerialIterator(TupleDataset(x, y), 4, shuffle=False))
    assert isinstance(batch, list)
    assert isinstance(batch, ExampleBatch)
    assert len(batch) == 4
    for i, (xi, yi) in enumerate(batch):
        np.testing.assert_array_equal(xi, x[i])
        assert yi == y[i]
    bx, by = concat_examples(batch)
    np.testing.assert_array_equal(bx, x[:4])
    np.testing.assert_array_equal(by, y[:4])
    assert (bx.dtype, by.dtype) == (x.dtype, y.dtype)


def test_numpy_array_dataset_gives_rows():
    x, _ = _arrays()
    batch = next(SerialIterator(x, 5, shuffle=False))
    assert isinstance(batch, ExampleBatch)
    np.testing.assert_array_equal(batch[2], x[2])
    np.testing.assert_array_equal(concat_examples(batch), x[:5])


# dataset builders whose batches are read example by example
SLOW_DATASETS = [
    ("list", lambda x, y: list(zip(x, y))),
    ("tuple-dataset-with-list", lambda x, y: TupleDataset(x, list(y))),
]


@pytest.mark.parametrize(
    "build", [b for _, b in SLOW_DATASETS], ids=[i for i, _ in SLOW_DATASETS]
)
def test_fast_and_example_paths_give_the_same_batches(build):
    x, y = _arrays(10)
    fast = SerialIterator(TupleDataset(x, y), 4, order_sampler=_sampler())
    slow = SerialIterator(build(x, y), 4, order_sampler=_sampler())
    for _ in range(6):
        fast_batch, slow_batch = next(fast), next(slow)
        assert type(slow_batch) is list
        for got, want in zip(concat_examples(fast_batch), concat_examples(slow_batch)):
            np.testing.assert_array_equal(got, want)
        assert (fast.epoch, fast.is_new_epoch) == (slow.epoch, slow.is_new_epoch)


def test_tuple_dataset_subclass_sees_every_read():
    class Augmented(TupleDataset):
        reads = 0

        def __getitem__(self, index):
            Augmented.reads += 1
            x, y = super().__getitem__(index)
            return x + 100, y

    x, y = _arrays()
    batch = next(SerialIterator(Augmented(x, y), 3, shuffle=False))
    assert type(batch) is list
    assert Augmented.reads == 3
    np.testing.assert_array_equal(concat_examples(batch)[0], x[:3] + 100)


def test_batch_trains_a_keras_model():
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    y = np.arange(16, dtype="int32") % 3
    model = make_classifier(n_in=8)
    iterator = SerialIterator(TupleDataset(x, y), 8)
    bx, by = concat_examples(next(iterator), device="cpu")
    assert keras.ops.is_tensor(bx)
    logs = model.train_on_batch(bx, by, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_trainer_epochs_follow_an_order_longer_than_the_dataset(tmp_out):
    from ktrainer import StandardUpdater, Trainer
    from ktrainer.training import extensions

    x = np.random.default_rng(0).normal(size=(10, 8)).astype("float32")
    y = np.arange(10, dtype="int32") % 3

    def oversample(order, position):  # every example once, the first 5 twice
        return np.concatenate([np.arange(10), np.arange(5)])

    iterator = SerialIterator(TupleDataset(x, y), 5, order_sampler=oversample)
    updater = StandardUpdater(iterator, make_classifier(n_in=8))
    trainer = Trainer(updater, (2, "epoch"), out=tmp_out)
    trainer.extend(extensions.LogReport(filename=None))
    trainer.run()
    # 15 examples per epoch in batches of 5: 3 iterations per epoch.
    assert updater.iteration == 6
    log = trainer.get_extension("LogReport").log
    assert [(e["epoch"], e["iteration"]) for e in log] == [(1, 3), (2, 6)]


@pytest.mark.parametrize("repeat", [True, False])
def test_next_stacked_matches_concat_of_next_across_epochs(repeat):
    x, y = _arrays(10)
    listed = SerialIterator(TupleDataset(x, y), 4, repeat, order_sampler=_sampler())
    stacked = SerialIterator(TupleDataset(x, y), 4, repeat, order_sampler=_sampler())
    assert stacked.stackable
    for _ in range(7 if repeat else 3):  # batches span epoch ends
        want = concat_examples(next(listed))
        got = stacked.next_stacked()
        assert isinstance(got, tuple)
        assert len(got) == 2
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        for attr in ("epoch", "is_new_epoch", "epoch_detail", "previous_epoch_detail"):
            assert getattr(stacked, attr) == getattr(listed, attr)
    if not repeat:
        with pytest.raises(StopIteration):
            stacked.next_stacked()


def test_next_stacked_of_an_array_dataset_is_one_array():
    x, _ = _arrays()
    iterator = SerialIterator(x, 5, shuffle=False)
    np.testing.assert_array_equal(iterator.next_stacked(), x[:5])


def test_next_stacked_refuses_a_dataset_read_example_by_example():
    x, y = _arrays()
    iterator = SerialIterator(list(zip(x, y)), 4)
    assert not iterator.stackable
    with pytest.raises(TypeError, match=r"next_stacked.*list"):
        iterator.next_stacked()
    assert iterator.current_position == 0  # nothing consumed


def test_epoch_size_is_the_length_of_the_order():
    x, y = _arrays(10)
    assert SerialIterator(TupleDataset(x, y), 4).epoch_size == 10

    def twice(order, position):
        return np.concatenate([np.arange(10), np.arange(10)])

    oversampled = SerialIterator(TupleDataset(x, y), 4, order_sampler=twice)
    assert oversampled.epoch_size == 20
    for _ in range(5):
        next(oversampled)
    assert oversampled.epoch == 1  # 20 examples made the epoch
