"""The tightest hand-written training loop per backend, for `bench_training.py`.

Each runs the compiled model's own `train_step` the way a user who wrote
the loop by hand for one framework would: jax jits it with the state
donated and the batches already on the device; tensorflow wraps it in a
`tf.function` fed numpy batches; torch calls it eagerly on tensors
converted once. This is the one place in the repository, besides the
backend seam, that imports the frameworks: a loop written for one
framework is what it measures.

With `stress=True` each loop also does, after every step, what the
benchmark's "stress" extension does (read one weight, set the learning
rate), written the way that loop would write it: that row shows what the
work itself costs, with no trainer around it.
"""

from __future__ import annotations

import time


def run(model, x, y, batch: int, epochs: int, stress: bool = False) -> list[float]:
    """Times of the end of each epoch (the first one includes compilation)."""
    import keras

    backend = keras.config.backend()
    steps = len(x) // batch
    xs = [x[i * batch : (i + 1) * batch] for i in range(steps)]
    ys = [y[i * batch : (i + 1) * batch] for i in range(steps)]
    model._symbolic_build(data_batch=(xs[0], ys[0]))
    model.optimizer.build(model.trainable_variables)
    return {"jax": _jax, "tensorflow": _tensorflow, "torch": _torch}[backend](
        model, xs, ys, epochs, stress
    )


def _read_and_set(model, seen):
    # The stress extension's work, on variables that hold the live state.
    import keras

    seen.append(keras.ops.copy(model.weights[0].value[0, 0]))
    model.optimizer.learning_rate.assign(1e-3)
    del seen[:-1]


def _jax(model, xs, ys, epochs, stress):
    import jax  # noqa: TID251 -- the hand-written jax loop being measured

    xs = [jax.device_put(a) for a in xs]
    ys = [jax.device_put(a) for a in ys]

    def step(state, data):
        logs, state = model.train_step(state, data)
        return logs["loss"], state

    jitted = jax.jit(step, donate_argnums=0)
    state = jax.tree.map(
        lambda v: jax.numpy.copy(v.value),
        (
            model.trainable_variables,
            model.non_trainable_variables,
            model.optimizer.variables,
            model.metrics_variables,
        ),
    )
    # The state lives in `state`, not in the variables: read and set it there.
    lr_path = model.optimizer.learning_rate.path
    lr = [v.path for v in model.optimizer.variables].index(lr_path)
    marks, seen = [], []
    for _ in range(epochs):
        for data in zip(xs, ys):
            loss, state = jitted(state, data)
            if stress:
                seen[:] = [jax.numpy.copy(state[0][0][0, 0])]
                state[2][lr] = jax.numpy.asarray(1e-3, state[2][lr].dtype)
        loss.block_until_ready()
        marks.append(time.perf_counter())
    return marks


def _tensorflow(model, xs, ys, epochs, stress):
    import tensorflow as tf  # noqa: TID251 -- the hand-written tf loop measured

    step = tf.function(
        model.train_step, jit_compile=bool(model.jit_compile), reduce_retracing=True
    )
    marks, seen = [], []
    for _ in range(epochs):
        for data in zip(xs, ys):
            logs = step(data)
            if stress:
                _read_and_set(model, seen)
        float(logs["loss"])
        marks.append(time.perf_counter())
    return marks


def _torch(model, xs, ys, epochs, stress):
    import torch  # noqa: TID251 -- the hand-written torch loop being measured

    xs = [torch.as_tensor(a) for a in xs]
    ys = [torch.as_tensor(a) for a in ys]
    model.train()
    marks, seen = [], []
    for _ in range(epochs):
        for data in zip(xs, ys):
            logs = model.train_step(data)
            if stress:
                _read_and_set(model, seen)
        float(logs["loss"])
        marks.append(time.perf_counter())
    return marks
