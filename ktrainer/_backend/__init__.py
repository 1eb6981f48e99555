"""The backend seam: the only place that imports tensorflow, jax or torch.

The module matching `keras.config.backend()` is chosen once, at import,
and its names are re-exported; see `base.py` for what each one does.
"""

from __future__ import annotations

import keras

from ktrainer._backend._common import (
    check_built,
    detached,
    is_tf_dataset,
    is_torch_loader,
)

BACKEND = keras.config.backend()

if BACKEND == "jax":
    from ktrainer._backend.jax import (
        Minimizer,
        TestStep,
        TrainStep,
        device_scope,
        finite_flags,
        host_view,
        serialize_rng_state,
        sync_fit_state,
    )
elif BACKEND == "tensorflow":
    from ktrainer._backend.tensorflow import (
        Minimizer,
        TestStep,
        TrainStep,
        device_scope,
        finite_flags,
        host_view,
        serialize_rng_state,
        sync_fit_state,
    )
elif BACKEND == "torch":
    from ktrainer._backend.torch import (
        Minimizer,
        TestStep,
        TrainStep,
        device_scope,
        finite_flags,
        host_view,
        serialize_rng_state,
        sync_fit_state,
    )
else:
    raise ImportError(
        "ktrainer supports the jax, tensorflow and torch Keras backends. "
        f"Received: KERAS_BACKEND={BACKEND!r}"
    )

__all__ = [
    "BACKEND",
    "Minimizer",
    "TestStep",
    "TrainStep",
    "check_built",
    "detached",
    "device_scope",
    "finite_flags",
    "host_view",
    "is_tf_dataset",
    "is_torch_loader",
    "serialize_rng_state",
    "sync_fit_state",
]
