"""`device=` on the updater and `Evaluator`: checked when they are built."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer import StandardUpdater
from ktrainer._backend import distribute
from ktrainer.iterators import SerialIterator
from ktrainer.training.extensions import Evaluator

HAS_GPU = bool(distribute.device_names("gpu"))
MISSING = ["gpu:7", "tpu:0", "cpu:3"] + ([] if HAS_GPU else [0, "gpu", "cuda"])


def _updater(device):
    model = make_classifier()
    return StandardUpdater(SerialIterator(make_dataset(16), 4), model, device=device)


def _evaluator(device):
    model = make_classifier()
    it = SerialIterator(make_dataset(8), 4, repeat=False, shuffle=False)
    return Evaluator(it, model, device=device)


@pytest.mark.parametrize("build", [_updater, _evaluator], ids=["updater", "evaluator"])
@pytest.mark.parametrize("device", MISSING, ids=[repr(d) for d in MISSING])
def test_missing_device_fails_when_built(build, device):
    backend = keras.config.backend()
    with pytest.raises(ValueError, match="device must name a device") as info:
        build(device)
    message = str(info.value)
    assert f"the {backend} backend sees" in message
    assert message.endswith(f"Received: device={device!r}")


@pytest.mark.parametrize("device", [None, -1, "cpu", "cpu:0", "@numpy"])
def test_host_devices_train_and_evaluate(device):
    updater = _updater(device)
    before = [np.copy(v) for v in updater.get_model().get_weights()]
    updater.update()
    updater.sync_model_state()
    after = updater.get_model().get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    result = _evaluator(device)()
    assert set(result) == {"main/loss", "main/accuracy"}


@pytest.mark.skipif(not HAS_GPU, reason="needs a visible GPU")
@pytest.mark.parametrize("device", [0, "gpu", "gpu:0"])
def test_gpu_device_matches_the_host(device):
    results = {}
    for where in ("cpu", device):
        keras.utils.set_random_seed(0)
        updater = _updater(where)
        for _ in range(3):
            updater.update()
        updater.sync_model_state()
        results[where] = updater.get_model().get_weights()
    for a, b in zip(results["cpu"], results[device]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
