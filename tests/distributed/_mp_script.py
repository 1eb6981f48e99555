"""Trains under `keras.distribution.ModelParallel` on 2 host devices.

Run in a subprocess by `test_jax_model_parallel.py` (the devices must be
set up before jax starts). Checks that the kernels stay sharded by the
layout map, that the weights match a single-device run, and that the
sharded run's snapshot resumes on one device. Prints `MATCH` on success.
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["KERAS_BACKEND"] = "jax"

import keras
import numpy as np

import ktrainer
from ktrainer.dataset import TupleDataset
from ktrainer.iterators import SerialIterator
from ktrainer.serializers import load_hdf5, save_hdf5

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 8)).astype("float32")
Y = RNG.integers(0, 4, 64).astype("int32")


def build():
    """The same seeded model each call, under the distribution if one is set."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,), name="x"),
            keras.layers.Dense(16, activation="relu", name="d1"),
            keras.layers.Dense(4, name="d2"),
        ],
        name="m",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def trainer(model, stop):
    iterator = SerialIterator(TupleDataset(X, Y), 16, shuffle=False)
    updater = ktrainer.StandardUpdater(iterator, model)
    return ktrainer.Trainer(updater, (stop, "iteration"))


def weights(model):
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.weights]


def main(path):
    reference = build()
    trainer(reference, 5).run()
    one_device = trainer(build(), 8)  # built before the distribution is set

    mesh = keras.distribution.DeviceMesh(
        (1, 2), ["batch", "model"], keras.distribution.list_devices()
    )
    layouts = keras.distribution.LayoutMap(mesh)
    layouts[".*d1.*kernel"] = (None, "model")
    layouts[".*d2.*kernel"] = ("model", None)
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch")
    )
    model = build()
    sharded = trainer(model, 5)
    sharded.run()
    specs = [tuple(layer.kernel.value.sharding.spec) for layer in model.layers]
    assert specs == [(None, "model"), ("model",)], specs  # jax drops trailing None
    for a, b in zip(weights(reference), weights(model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    save_hdf5(path, sharded)
    keras.distribution.set_distribution(None)
    load_hdf5(path, one_device)
    assert one_device.updater.iteration == 5
    for a, b in zip(weights(model), weights(one_device.updater.get_model())):
        np.testing.assert_array_equal(a, b)
    print("MATCH", specs)


if __name__ == "__main__":
    main(sys.argv[1])
