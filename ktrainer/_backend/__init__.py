"""The backend seam: the only place that imports tensorflow, jax or torch.

The module matching `keras.config.backend()` is chosen once, at import,
and its names are re-exported; see `base.py` for what each one does.
"""

from __future__ import annotations

import keras

BACKEND = keras.config.backend()

if BACKEND == "jax":
    from ktrainer._backend.jax import (
        TestStep,
        TrainStep,
        device_scope,
        host_view,
        serialize_rng_state,
    )
elif BACKEND == "tensorflow":
    from ktrainer._backend.tensorflow import (
        TestStep,
        TrainStep,
        device_scope,
        host_view,
        serialize_rng_state,
    )
elif BACKEND == "torch":
    from ktrainer._backend.torch import (
        TestStep,
        TrainStep,
        device_scope,
        host_view,
        serialize_rng_state,
    )
else:
    raise ImportError(
        "ktrainer supports the jax, tensorflow and torch Keras backends. "
        f"Received: KERAS_BACKEND={BACKEND!r}"
    )

__all__ = [
    "BACKEND",
    "TestStep",
    "TrainStep",
    "device_scope",
    "host_view",
    "serialize_rng_state",
]
