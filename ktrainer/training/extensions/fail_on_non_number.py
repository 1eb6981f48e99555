"""`FailOnNonNumber`: stop training when a model weight becomes NaN or Inf."""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np

from ktrainer import _backend
from ktrainer.training import extension


def _is_float(variable) -> bool:
    return keras.backend.is_float_dtype(variable.dtype)


class FailOnNonNumber(extension.Extension):
    """Raises a `RuntimeError` once a weight of a model contains NaN or Inf.

    Training goes on computing even after the weights have diverged; this
    extension ends it early. Each call checks every floating-point weight
    (`model.weights`) of every model in `trainer.updater.get_all_models()`
    with one fused reduction on the device (one flag per weight), and does
    not wait for it: the flags of a call are read at the next call (or
    when training ends), by which time the next step is already queued,
    so the device never stalls. The error names the iteration at which
    the non-finite value appeared (the call before the one that raises)
    and the first weight that held one then.

    With `raise_error=False` it warns once (a `RuntimeWarning`) and lets
    training go on. Chainer v7's `FailOnNonNumber` has no such option; it
    always raises, and at the iteration itself.

    In a fused run (`Trainer(max_fused_steps=...)`) it does not hold the
    run back: the weights are checked after each fused call, and the
    error names the range of iterations that call ran (a non-finite
    weight stays non-finite, so none is missed).

    With a `StandardUpdater` stepping compiled models, the check is part
    of the train step itself (`StandardUpdater.watch_finite_weights`;
    inside the compiled step on jax and tensorflow): it then costs no
    call and no sync of the model state of its own (`model_state` becomes
    `'none'` when the trainer starts). In an iteration whose weights may have been
    written after the step (an extension with `model_state` `'write'` or
    `'read_write'` ran), in a fused call and with any other updater, it
    reads the weights themselves.

    Default trigger: `(1, 'iteration')`; priority: `PRIORITY_READER`.
    It reads model variables: `model_state = 'read'`, or `'none'` where
    the step checks them.

    Args:
        raise_error: raise a `RuntimeError` (`True`) or warn once
            (`False`). Defaults to `True`.
    """

    model_state = "read"

    def __init__(self, raise_error: bool = True) -> None:
        if not isinstance(raise_error, bool):
            raise TypeError(
                f"raise_error must be a bool. Received: raise_error={raise_error!r}"
            )
        self._raise_error = raise_error
        self._warned = False
        self._pending = None  # (first iteration, iteration, groups: see _flags)
        self._weights = None  # (model ids, weights), built once
        self._checked = None  # the iteration of the previous call
        self._in_step = False  # the updater's steps check the weights

    def initialize(self, trainer) -> None:
        watch = getattr(trainer.updater, "watch_finite_weights", None)
        self._in_step = bool(watch is not None and watch())
        # Read by the trainer once every extension is initialized.
        self.model_state = "none" if self._in_step else "read"

    def __call__(self, trainer) -> None:
        if self._warned:
            return
        pending = self._pending
        self._pending = None
        iteration = trainer.updater.iteration
        first = iteration
        if getattr(trainer, "fused_observation", None) and self._checked is not None:
            first = self._checked + 1  # the first iteration of the fused call
        self._checked = iteration
        groups = self._flags(trainer)
        if groups:
            self._pending = (min(first, iteration), iteration, groups)
        if pending is not None:
            self._resolve(*pending)

    def _flags(self, trainer) -> list:
        """`[(model names, weights, device flags)]` for the weights now.

        `model names` is one name for all the weights, or a name per
        weight; names are looked at only when a weight is not finite.
        """
        updater = trainer.updater
        if self._in_step:
            found = updater.finite_weight_flags()
            if found is not None:
                return found
            updater.sync_model_state()  # model_state is 'none': read them now
        models = updater.get_all_models()
        key = tuple(id(model) for model in models.values())
        if self._weights is None or self._weights[0] != key:
            named = _float_weights(models)
            self._weights = (key, [n for n, _ in named], [v for _, v in named])
        _, names, weights = self._weights
        if not weights:
            return []
        return [(names, weights, _backend.finite_flags([v.value for v in weights]))]

    def iterations_until_fire(self, trainer) -> float:
        """A fused run may go on: non-finite weights stay non-finite."""
        return math.inf

    def on_error(self, trainer, exc, tb) -> None:
        self._pending = None  # the loop failed; do not add another error

    def finalize(self) -> None:
        """Reads the last call's result: a divergence there raises too."""
        pending, self._pending = self._pending, None
        if pending is not None and not self._warned:
            self._resolve(*pending)

    def _resolve(self, first: int, iteration: int, groups: list) -> None:
        for names, weights, flags in groups:
            finite = np.asarray(_backend.host_view(flags))
            if not finite.all():
                bad = int(np.argmin(finite))
                name = names if isinstance(names, str) else names[bad]
                self._fail(first, iteration, name, weights[bad])
                return

    def _fail(self, first: int, iteration: int, name: str, variable) -> None:
        when = (
            f"at iteration {iteration}"
            if first == iteration
            else f"between iterations {first} and {iteration} (a fused run)"
        )
        message = (
            f"Weights of model {name!r} diverged {when}: "
            f"variable {variable.path!r} contains NaN or Inf."
        )
        if self._raise_error:
            raise RuntimeError(message)
        self._warned = True
        warnings.warn(message + " Training goes on.", RuntimeWarning, stacklevel=4)


def _float_weights(models: dict) -> list:
    return [
        (name, variable)
        for name, model in models.items()
        for variable in model.weights
        if _is_float(variable)
    ]
