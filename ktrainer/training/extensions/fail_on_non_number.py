"""`FailOnNonNumber`: stop training when a model weight becomes NaN or Inf."""

from __future__ import annotations

import warnings

import keras
import numpy as np

from ktrainer.training import extension


def _is_float(variable) -> bool:
    return keras.backend.is_float_dtype(variable.dtype)


class FailOnNonNumber(extension.Extension):
    """Raises a `RuntimeError` once a weight of a model contains NaN or Inf.

    Training goes on computing even after the weights have diverged; this
    extension ends it early. Each call checks every floating-point weight
    (`model.weights`) of every model in `trainer.updater.get_all_models()`
    on its device: one reduction per weight, combined into one boolean
    vector that is copied to the host once, so a call costs a single sync.

    With `raise_error=False` it warns once (a `RuntimeWarning` naming the
    first bad weight) and lets training go on. Chainer v7's
    `FailOnNonNumber` has no such option; it always raises.

    Default trigger: `(1, 'iteration')`; priority: `PRIORITY_READER`.
    It reads model variables, so `needs_model_state` is `True`.

    Args:
        raise_error: raise a `RuntimeError` (`True`) or warn once
            (`False`). Defaults to `True`.
    """

    needs_model_state = True  # it reads model variables

    def __init__(self, raise_error: bool = True) -> None:
        if not isinstance(raise_error, bool):
            raise TypeError(
                f"raise_error must be a bool. Received: raise_error={raise_error!r}"
            )
        self._raise_error = raise_error
        self._warned = False

    def __call__(self, trainer) -> None:
        if self._warned:
            return
        named = [
            (name, variable)
            for name, model in trainer.updater.get_all_models().items()
            for variable in model.weights
            if _is_float(variable)
        ]
        if not named:
            return
        flags = keras.ops.stack(
            [keras.ops.all(keras.ops.isfinite(variable)) for _, variable in named]
        )
        finite = np.asarray(keras.ops.convert_to_numpy(flags))
        if finite.all():
            return
        name, variable = named[int(np.argmin(finite))]
        message = (
            f"Weights of model {name!r} diverged: variable {variable.path!r} "
            "contains NaN or Inf."
        )
        if self._raise_error:
            raise RuntimeError(message)
        self._warned = True
        warnings.warn(message + " Training goes on.", RuntimeWarning, stacklevel=2)
