"""The torch seam runs train_step eagerly and restarts metrics per batch."""

from __future__ import annotations

import numpy as np
import torch
from conftest import make_classifier, make_dataset

from ktrainer._backend import TrainStep


def _batch(n=16):
    data = make_dataset(n)
    return (np.stack([x for x, _ in data]), np.array([y for _, y in data]))


def test_logs_are_torch_tensors_and_weights_update():
    model = make_classifier()
    step = TrainStep(model, model.optimizer)
    before = model.layers[0].kernel.value.detach().clone()
    logs = step(_batch())
    assert isinstance(logs["loss"], torch.Tensor)
    assert not torch.allclose(model.layers[0].kernel.value, before)


def test_metrics_restart_every_batch():
    model = make_classifier()
    step = TrainStep(model, model.optimizer)
    step(_batch())
    step(_batch())
    counts = [float(v.value) for v in model.metrics_variables if v.name == "count"]
    assert counts
    assert all(c == 16 for c in counts)


def test_sync_returns_modules_to_train_mode():
    model = make_classifier()
    step = TrainStep(model, model.optimizer)
    step(_batch())
    model.eval()
    step.sync()
    step(_batch())
    assert model.training


def test_numpy_batches_convert_as_keras_converts_them():
    # The direct path for tuples of arrays matches keras.ops.convert_to_tensor.
    import keras

    from ktrainer._backend.torch import _to_tensors

    dtypes = ("float32", "float64", "float16", "int32", "int64", "uint8")
    arrays = (
        *(np.arange(6).reshape(2, 3).astype(dtype) for dtype in dtypes),
        np.array([True, False]),
        np.array(2.5, "float32"),
        np.arange(4, dtype="uint32"),  # Keras converts uint32 itself
    )
    converted = _to_tensors(arrays)
    assert isinstance(converted, tuple)
    for array, tensor in zip(arrays, converted):
        expected = keras.ops.convert_to_tensor(array)
        assert tensor.dtype == expected.dtype
        assert tensor.device == expected.device
        np.testing.assert_array_equal(tensor.numpy(), expected.numpy())
    nested = _to_tensors({"x": arrays[0], "y": [arrays[3]]})
    assert isinstance(nested["x"], torch.Tensor)
    assert isinstance(nested["y"][0], torch.Tensor)
