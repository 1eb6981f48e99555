"""FailOnNonNumber: raises (or warns once) naming the first non-finite weight."""

from __future__ import annotations

import re
import warnings

import keras
import numpy as np
import pytest
from conftest import make_classifier, make_dataset

from ktrainer.iterators import SerialIterator
from ktrainer.training import PRIORITY_READER, PRIORITY_WRITER, Trainer
from ktrainer.training.extensions.fail_on_non_number import FailOnNonNumber
from ktrainer.training.updaters import StandardUpdater


def _trainer(stop, out, extension, *, spoil_at=None, value=np.nan, layer=1):
    """A real trainer; at iteration `spoil_at` one entry of a kernel becomes `value`."""
    model = make_classifier()
    updater = StandardUpdater(SerialIterator(make_dataset(), 16), model)
    trainer = Trainer(updater, (stop, "iteration"), out=out)
    kernel = model.layers[layer].kernel

    def spoil(t):
        if t.updater.iteration == spoil_at:
            array = keras.ops.convert_to_numpy(kernel).copy()
            array[0, 0] = value
            kernel.assign(array)

    # A writer runs before FailOnNonNumber (a reader) in the same iteration.
    trainer.extend(spoil, name="spoil", priority=PRIORITY_WRITER)
    trainer.extend(extension)
    return trainer, kernel


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("layer", [0, 1], ids=["hidden", "logits"])
def test_raises_naming_the_variable(tmp_out, value, layer):
    trainer, kernel = _trainer(
        5, tmp_out, FailOnNonNumber(), spoil_at=2, value=value, layer=layer
    )
    with pytest.raises(RuntimeError, match=re.escape(repr(kernel.path))) as info:
        trainer.run()
    assert "'main'" in str(info.value)
    assert "at iteration 2" in str(info.value)
    # The flag of iteration 2 is read once step 3 was dispatched.
    assert trainer.updater.iteration == 3


def test_a_divergence_at_the_last_iteration_raises_when_training_ends(tmp_out):
    log = []
    trainer, _ = _trainer(3, tmp_out, FailOnNonNumber(), spoil_at=3)
    ext = lambda t: None  # noqa: E731
    ext.finalize = lambda: log.append("finalized")
    trainer.extend(ext, name="other")
    with pytest.raises(RuntimeError, match="at iteration 3"):
        trainer.run()
    assert log == ["finalized"]  # other finalizers still ran


def test_finite_weights_pass(tmp_out):
    trainer, _ = _trainer(4, tmp_out, FailOnNonNumber())
    trainer.run()
    assert trainer.updater.iteration == 4


def test_raise_error_false_warns_once_and_goes_on(tmp_out):
    trainer, kernel = _trainer(
        5, tmp_out, FailOnNonNumber(raise_error=False), spoil_at=2
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.run()
    assert trainer.updater.iteration == 5
    messages = [
        str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)
    ]
    assert len(messages) == 1
    assert repr(kernel.path) in messages[0]


def test_defaults_and_bad_argument():
    ext = FailOnNonNumber()
    assert ext.trigger == (1, "iteration")
    assert ext.priority == PRIORITY_READER
    assert ext.model_state == "read"
    with pytest.raises(TypeError, match="raise_error must be a bool"):
        FailOnNonNumber(raise_error="yes")


def _diverging_trainer(stop, out, extension, *, poison_batch):
    """A trainer whose batch `poison_batch` (0-based) holds a NaN input."""
    model = make_classifier()
    data = make_dataset()
    x, y = data[poison_batch * 16]
    data[poison_batch * 16] = (np.full_like(x, np.nan), y)
    updater = StandardUpdater(SerialIterator(data, 16, shuffle=False), model)
    trainer = Trainer(updater, (stop, "iteration"), out=out)
    trainer.extend(extension)
    return trainer, model


def test_a_step_that_diverges_is_caught_by_the_check_inside_the_step(tmp_out):
    # No extension writes the weights, so the check runs inside the step
    # and names the iteration whose step produced the NaN.
    extension = FailOnNonNumber()
    trainer, model = _diverging_trainer(6, tmp_out, extension, poison_batch=2)
    with pytest.raises(RuntimeError, match="at iteration 3") as info:
        trainer.run()
    assert repr(model.layers[0].kernel.path) in str(info.value)
    assert extension.model_state == "none"  # no sync for it


def test_the_check_inside_the_step_flags_each_float_weight(tmp_out):
    trainer, model = _diverging_trainer(2, tmp_out, FailOnNonNumber(), poison_batch=3)
    seen = []

    def look(t):
        seen.append(t.updater.finite_weight_flags())

    look.model_state = "none"  # so nothing makes the flags stale
    trainer.extend(look)
    trainer.run()
    assert len(seen) == 2
    assert all(found is not None for found in seen)
    ((name, weights, flags),) = seen[-1]
    assert name == "main"
    assert [w.path for w in weights] == [w.path for w in model.weights]
    assert np.asarray(keras.ops.convert_to_numpy(flags)).tolist() == [True] * 4
    # A sync for a reader leaves them valid; a write makes them stale.
    trainer.updater.sync_model_state()
    assert trainer.updater.finite_weight_flags() is not None
    trainer.updater.model_state_written()
    assert trainer.updater.finite_weight_flags() is None


@pytest.mark.parametrize(
    ("access", "stale"), [("read", False), ("read_write", True), ("write", True)]
)
def test_only_extensions_that_may_write_make_the_in_step_flags_stale(
    tmp_out, access, stale
):
    trainer, _ = _diverging_trainer(3, tmp_out, FailOnNonNumber(), poison_batch=3)
    seen = []

    def touch(t):
        pass

    touch.model_state = access

    def look(t):
        seen.append(t.updater.finite_weight_flags())

    look.model_state = "none"
    trainer.extend(touch, priority=200)
    trainer.extend(look, priority=150)
    trainer.run()
    assert len(seen) == 3
    assert all((found is None) == stale for found in seen)
