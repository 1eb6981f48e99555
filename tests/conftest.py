"""Shared pytest setup: the backend matrix, markers and common fixtures.

The whole suite runs once per Keras backend (tox sets ``KERAS_BACKEND``).
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

BACKENDS = ("tensorflow", "jax", "torch")

_selected = os.environ.get("KERAS_BACKEND")
if _selected is None:
    raise pytest.UsageError(
        "KERAS_BACKEND must be set to one of tensorflow, jax or torch "
        "(tox sets it for you)."
    )
if _selected != keras.config.backend():
    raise pytest.UsageError(
        f"KERAS_BACKEND={_selected!r} but keras selected "
        f"{keras.config.backend()!r}; check ~/.keras/keras.json."
    )

# Backend seam tests of the other backends must not even be imported: their
# framework may not be installed in this environment.
collect_ignore_glob = [
    f"_backend/test_{name}.py" for name in BACKENDS if name != _selected
]
if not os.environ.get("KTRAINER_INTEROP"):
    collect_ignore_glob.append("interop/*")


def pytest_collection_modifyitems(config, items):
    backend = keras.config.backend()
    for item in items:
        only = [m.args[0] for m in item.iter_markers("backend")]
        if only and backend not in only:
            item.add_marker(
                pytest.mark.skip(reason=f"runs only under {', '.join(only)}")
            )
        for marker in item.iter_markers("skip_backend"):
            if marker.args[0] == backend:
                reason = marker.args[1] if len(marker.args) > 1 else ""
                item.add_marker(pytest.mark.skip(reason=reason or backend))


@pytest.fixture
def backend_name() -> str:
    return keras.config.backend()


@pytest.fixture
def tmp_out(tmp_path) -> str:
    """An empty output directory for a trainer, as a string path."""
    out = tmp_path / "result"
    out.mkdir()
    return str(out)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state on every backend."""
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    # free_memory=False skips a gc.collect() that costs ~1 s per test.
    keras.backend.clear_session(free_memory=False)


def make_classifier(
    n_in: int = 8,
    n_hidden: int = 16,
    n_out: int = 3,
    dropout: float = 0.0,
    **compile_kw,
) -> keras.Model:
    """A tiny compiled MLP classifier with stable layer names."""
    layers = [keras.Input((n_in,), name="x")]
    layers.append(keras.layers.Dense(n_hidden, activation="relu", name="hidden"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name="dropout"))
    layers.append(keras.layers.Dense(n_out, name="logits"))
    model = keras.Sequential(layers, name="classifier")
    compile_kw.setdefault("optimizer", keras.optimizers.SGD(0.1))
    compile_kw.setdefault(
        "loss", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    compile_kw.setdefault("metrics", ["accuracy"])
    model.compile(**compile_kw)
    return model


def make_dataset(n: int = 64, n_in: int = 8, n_out: int = 3, seed: int = 0):
    """A learnable toy classification set as a list of ``(x, y)`` examples."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in)).astype("float32")
    w = rng.normal(size=(n_in, n_out)).astype("float32")
    y = np.argmax(x @ w, axis=1).astype("int32")
    return list(zip(x, y))


@pytest.fixture
def classifier() -> keras.Model:
    return make_classifier()


@pytest.fixture
def toy_dataset():
    return make_dataset()
