"""Keras data sources as ktrainer iterators train as a SerialIterator does."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer.dataset import TupleDataset, concat_examples
from ktrainer.dataset.data_source_iterator import (
    DataSourceIterator,
    as_iterator,
    one_pass_iterator,
)
from ktrainer.iterators import SerialIterator
from ktrainer.serializers import load_npz, save_npz
from ktrainer.training import Trainer, extensions
from ktrainer.training.updaters import StandardUpdater

BATCH = 16


def _arrays():
    x, y = zip(*make_dataset(), strict=True)
    return np.stack(x), np.array(y)


class _Batches(keras.utils.PyDataset):
    """Batches of 16 of the toy set, counting its epoch hooks."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y
        self.epochs_ended = 0

    def __len__(self):
        return len(self.x) // BATCH

    def __getitem__(self, i):
        part = slice(i * BATCH, (i + 1) * BATCH)
        return self.x[part], self.y[part]

    def on_epoch_end(self):
        self.epochs_ended += 1


def _train(iterator, out, epochs=2):
    """Final weights and per-epoch losses of a fixed-seed training run."""
    keras.utils.set_random_seed(0)
    model = make_classifier()
    trainer = Trainer(StandardUpdater(iterator, model), (epochs, "epoch"), out=out)
    trainer.extend(extensions.LogReport(filename=None))
    trainer.run()
    losses = [entry["main/loss"] for entry in trainer.get_extension("LogReport").log]
    return model.get_weights(), losses


def _assert_same_training(iterator, out):
    x, y = _arrays()
    reference = SerialIterator(TupleDataset(x, y), BATCH, shuffle=False)
    expected_weights, expected_losses = _train(reference, out)
    weights, losses = _train(iterator, out)
    assert losses == pytest.approx(expected_losses, rel=1e-5)
    for got, want in zip(weights, expected_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_py_dataset_trains_as_a_serial_iterator(tmp_out):
    _assert_same_training(as_iterator(_Batches(*_arrays()), shuffle=False), tmp_out)


def test_array_tuple_trains_as_a_serial_iterator(tmp_out):
    iterator = as_iterator(_arrays(), batch_size=BATCH, shuffle=False)
    assert isinstance(iterator, SerialIterator)
    _assert_same_training(iterator, tmp_out)


def test_torch_data_loader_trains_as_a_serial_iterator(tmp_out):
    torch = pytest.importorskip("torch")
    x, y = _arrays()
    dataset = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y))
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH)
    iterator = as_iterator(loader)
    assert len(iterator) == 4
    _assert_same_training(iterator, tmp_out)


@pytest.mark.backend("tensorflow")
def test_tf_dataset_trains_as_a_serial_iterator(tmp_out):
    tf = pytest.importorskip("tensorflow")
    dataset = tf.data.Dataset.from_tensor_slices(_arrays()).batch(BATCH)
    _assert_same_training(as_iterator(dataset), tmp_out)


@pytest.mark.backend("tensorflow")
def test_infinite_tf_dataset_is_refused():
    tf = pytest.importorskip("tensorflow")
    dataset = tf.data.Dataset.from_tensor_slices(_arrays()).batch(BATCH).repeat()
    with pytest.raises(ValueError, match=r"must be a finite tf\.data\.Dataset"):
        as_iterator(dataset)


def test_epoch_accounting_and_hooks():
    source = _Batches(*_arrays())
    iterator = as_iterator(source, shuffle=False)
    details = []
    for _ in range(5):
        next(iterator)
        details.append(
            (
                iterator.epoch_detail,
                iterator.previous_epoch_detail,
                iterator.is_new_epoch,
            )
        )
    assert details == [
        (0.25, 0.0, False),
        (0.5, 0.25, False),
        (0.75, 0.5, False),
        (1.0, 0.75, True),
        (1.25, 1.0, False),
    ]
    assert iterator.epoch == 1
    assert source.epochs_ended == 1


def test_batches_pass_through_concat_examples():
    x, y = _arrays()
    batch = next(as_iterator(_Batches(x, y), shuffle=False))
    assert len(batch) == BATCH
    bx, by = concat_examples(batch)
    np.testing.assert_array_equal(bx, x[:BATCH])
    np.testing.assert_array_equal(by, y[:BATCH])


def test_dict_batches_pass_through_concat_examples():
    x, y = _arrays()

    class DictBatches(_Batches):
        def __getitem__(self, i):
            bx, by = super().__getitem__(i)
            return {"x": bx, "y": by}

    batch = next(as_iterator(DictBatches(x, y), shuffle=False))
    assert batch[0]["y"] == y[0]
    arrays = concat_examples(batch)
    np.testing.assert_array_equal(arrays["x"], x[:BATCH])


def test_shuffle_permutes_batches_each_epoch():
    x, y = _arrays()
    iterator = as_iterator(_Batches(x, y))
    firsts = [
        int(np.where(x == concat_examples(next(iterator))[0][0])[0][0])
        for _ in range(4)
    ]
    assert sorted(firsts) == [0, 16, 32, 48]


def test_no_repeat_stops_after_one_pass_and_resets():
    iterator = as_iterator(_Batches(*_arrays()), repeat=False)
    assert len(list(iterator)) == 4
    with pytest.raises(StopIteration):
        next(iterator)
    iterator.reset()
    assert len(list(iterator)) == 4


def test_resume_continues_with_the_next_batch(tmp_path):
    x, y = _arrays()
    path = os.fspath(tmp_path / "it.npz")
    first = as_iterator(_Batches(x, y))
    for _ in range(6):
        next(first)
    save_npz(path, first)
    expected = [concat_examples(next(first))[0] for _ in range(4)]

    resumed = as_iterator(_Batches(x, y))
    load_npz(path, resumed)
    assert resumed.epoch_detail == pytest.approx(1.5)
    for want in expected:
        np.testing.assert_array_equal(concat_examples(next(resumed))[0], want)


def test_streaming_resume_warns_and_skips(tmp_path):
    torch = pytest.importorskip("torch")
    x, y = _arrays()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)),
        batch_size=BATCH,
    )
    path = os.fspath(tmp_path / "it.npz")
    first = as_iterator(loader)
    next(first)
    save_npz(path, first)
    resumed = as_iterator(loader)
    load_npz(path, resumed)
    with pytest.warns(UserWarning, match="skips the first 1 batches"):
        batch = next(resumed)
    np.testing.assert_array_equal(concat_examples(batch)[0], x[BATCH : 2 * BATCH])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "batch_size is required"),
        ({"batch_size": 4, "source": "py"}, ValueError, "batch_size must be None"),
    ],
    ids=["arrays-without-batch-size", "py-dataset-with-batch-size"],
)
def test_bad_arguments(kwargs, error, match):
    source = _Batches(*_arrays()) if kwargs.pop("source", None) else _arrays()
    with pytest.raises(error, match=match):
        as_iterator(source, **kwargs)


def test_shuffle_of_a_streaming_source_is_refused():
    torch = pytest.importorskip("torch")
    x, y = _arrays()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y))
    )
    with pytest.raises(ValueError, match="shuffle must be False"):
        DataSourceIterator(loader, shuffle=True)


def test_ktrainer_iterators_and_unknown_objects_pass_through():
    iterator = SerialIterator(make_dataset(), BATCH)
    assert as_iterator(iterator) is iterator
    unknown = [1, 2, 3]
    assert as_iterator(unknown) is unknown


def _stream(iterator) -> list[list[int]]:
    return [concat_examples(batch)[1].tolist() for batch in iterator]


def test_one_pass_iterator_reads_each_source_once_in_order():
    x, y = _arrays()
    expected = [y[i : i + 32].tolist() for i in range(0, len(y), 32)]
    for source in (
        (x, y),
        TupleDataset(x, y),
        as_iterator((x, y), batch_size=32),
        SerialIterator(TupleDataset(x, y), 32, repeat=False, shuffle=False),
    ):
        iterator = one_pass_iterator(source)
        assert iterator.repeat is False
        assert _stream(iterator) == expected
    by_batch = [y[i : i + BATCH].tolist() for i in range(0, len(y), BATCH)]
    for source in (_Batches(x, y), DataSourceIterator(_Batches(x, y), shuffle=True)):
        iterator = one_pass_iterator(source)
        assert iterator.repeat is False
        assert _stream(iterator) == by_batch


def test_one_pass_iterator_leaves_other_sources_to_the_caller():
    x, y = _arrays()
    own = SerialIterator(TupleDataset(x, y), 4)  # repeats: the caller refuses it
    batches = [make_dataset(8)]
    assert one_pass_iterator(own) is own
    assert one_pass_iterator(batches) is batches
    assert one_pass_iterator(3) == 3
