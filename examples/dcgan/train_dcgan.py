"""Train a GAN with a custom updater (Chainer's examples/dcgan, for Keras 3).

A generator turns noise into 8x8 digits and a discriminator tells them
from scikit-learn's bundled digits. One `update_core`, written once for
every backend, makes two optimization steps per batch with
`StandardUpdater.minimize`: the discriminator's (the generator's weights
are read, not stepped) and then the generator's (the discriminator is
read). Runs under whichever `KERAS_BACKEND` is set.

    KERAS_BACKEND=jax python examples/dcgan/train_dcgan.py --epoch 100
    KERAS_BACKEND=jax python examples/dcgan/train_dcgan.py --epoch 200 --autoload

It prints `gen/loss` and `dis/loss` per epoch and writes `log`,
`loss.png`, `digits_epoch_<N>.png` (a 10x10 grid of generated digits
every `--image-interval` epochs) and `snapshot_iter_<iteration>` files
to `--out`. `--dataset mnist.npz` trains on MNIST (`x_train` as
`keras.datasets.mnist` stores it) instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import keras
import numpy as np

import ktrainer
from ktrainer import serializers, training
from ktrainer.iterators import SerialIterator
from ktrainer.training import extensions

logger = logging.getLogger("train_dcgan")


def load_images(path: str | None) -> tuple[np.ndarray, int]:
    """Returns the training images flattened to `[-1, 1]`, and their side."""
    if path is None:
        from sklearn.datasets import load_digits

        images = load_digits().images  # (1797, 8, 8), values 0..16
        scale = 16.0
    else:
        with np.load(path, allow_pickle=False) as f:
            images = f["x_train"]  # (N, H, W), values 0..255
        scale = 255.0
    side = images.shape[1]
    flat = images.reshape(len(images), -1).astype("float32")
    return flat / (scale / 2) - 1.0, side


def build_generator(n_hidden: int, n_pixels: int, n_units: int) -> keras.Model:
    # Explicit names keep variable paths stable, so snapshots load back.
    return keras.Sequential(
        [
            keras.Input((n_hidden,), name="z"),
            keras.layers.Dense(n_units, name="l0"),
            keras.layers.LeakyReLU(0.2, name="a0"),
            keras.layers.Dense(n_units * 2, name="l1"),
            keras.layers.LeakyReLU(0.2, name="a1"),
            keras.layers.Dense(n_pixels, activation="tanh", name="out"),
        ],
        name="gen",
    )


def build_discriminator(n_pixels: int, n_units: int) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((n_pixels,), name="x"),
            keras.layers.Dense(n_units * 2, name="l0"),
            keras.layers.LeakyReLU(0.2, name="a0"),
            keras.layers.Dense(n_units, name="l1"),
            keras.layers.LeakyReLU(0.2, name="a1"),
            keras.layers.Dense(1, name="logit"),
        ],
        name="dis",
    )


class GANUpdater(training.StandardUpdater):
    """Steps the discriminator, then the generator, on each batch.

    The noise of iteration `i` is drawn from a generator seeded with
    `(seed, i)`, so it needs no state of its own: a run resumed from a
    snapshot draws the same noise as an uninterrupted one.

    Args:
        iterator: the iterator over real images.
        optimizer: `{'gen': ..., 'dis': ...}` Keras optimizers.
        model: `{'gen': generator, 'dis': discriminator}`.
        n_hidden: the size of the noise vector.
        seed: the noise seed. Defaults to `0`.
        device: where to run. Defaults to `None`.
    """

    def __init__(self, iterator, optimizer, model, n_hidden, seed=0, device=None):
        super().__init__(iterator, optimizer, model=model, device=device)
        self.n_hidden = n_hidden
        self.seed = seed

    def noise(self, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.iteration])
        return rng.standard_normal((n, self.n_hidden)).astype("float32")

    def dis_loss(self, x_real, z):
        gen, dis = self.get_model("gen"), self.get_model("dis")
        y_real = dis(x_real, training=True)
        y_fake = dis(gen(z, training=True), training=True)
        # -log D(x) - log(1 - D(G(z))), written with logits.
        loss = keras.ops.mean(keras.ops.softplus(-y_real)) + keras.ops.mean(
            keras.ops.softplus(y_fake)
        )
        ktrainer.report({"loss": loss}, dis)
        return loss

    def gen_loss(self, z):
        gen, dis = self.get_model("gen"), self.get_model("dis")
        y_fake = dis(gen(z, training=True), training=True)
        # -log D(G(z)): the non-saturating generator loss.
        loss = keras.ops.mean(keras.ops.softplus(-y_fake))
        ktrainer.report({"loss": loss}, gen)
        return loss

    def update_core(self) -> None:
        batch = next(self.get_iterator("main"))
        x_real = self.converter(batch, self.device)
        z = self.noise(len(batch))
        self.minimize("dis", self.dis_loss, x_real, z)
        self.minimize("gen", self.gen_loss, z)


class GeneratedImages(training.Extension):
    """Writes a PNG grid of generated images, from the same noise each time.

    Args:
        generator: the generator model.
        n_hidden: the size of its noise vector.
        side: the side of an image, in pixels.
        rows: the grid is `rows x rows` images. Defaults to `10`.
        seed: the seed of the fixed noise. Defaults to `0`.
        filename: the file name under `trainer.out`, filled by
            `filename.format(trainer)`. Defaults to
            `'digits_epoch_{.updater.epoch}.png'`.
    """

    trigger = (10, "epoch")

    def __init__(
        self,
        generator,
        n_hidden,
        side,
        rows=10,
        seed=0,
        filename="digits_epoch_{.updater.epoch}.png",
    ):
        self.generator = generator
        self.side = side
        self.rows = rows
        self.filename = filename
        rng = np.random.default_rng(seed)
        self.z = rng.standard_normal((rows * rows, n_hidden)).astype("float32")

    def __call__(self, trainer) -> None:
        import matplotlib.image  # writes PNGs without a GUI backend

        images = keras.ops.convert_to_numpy(self.generator(self.z, training=False))
        path = os.path.join(trainer.out, self.filename.format(trainer))
        grid = image_grid(images, self.rows, self.side)
        matplotlib.image.imsave(path, grid, cmap="gray", vmin=0.0, vmax=1.0)


def image_grid(images: np.ndarray, rows: int, side: int, pad: int = 2) -> np.ndarray:
    """Tiles `rows * rows` flat images in `[-1, 1]` into one `[0, 1]` image.

    Cells are separated by `pad` gray pixels, and small images are scaled
    up so that the grid is at least 400 pixels wide.
    """
    cells = (np.clip(images, -1, 1).reshape(rows, rows, side, side) + 1) / 2
    cell = side + pad
    grid = np.full((rows * cell + pad, rows * cell + pad), 0.5)
    for r in range(rows):
        for c in range(rows):
            y, x = pad + r * cell, pad + c * cell
            grid[y : y + side, x : x + side] = cells[r, c]
    scale = -(-400 // grid.shape[0])  # ceil: at least 400 pixels
    return np.kron(grid, np.ones((scale, scale)))


def parse_device_arg(value: str):
    """Lets `--device 0` and `--device -1` mean the ints Chainer used."""
    try:
        return int(value)
    except ValueError:
        return value


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--batchsize", "-b", type=int, default=64, help="examples per batch"
    )
    parser.add_argument("--epoch", "-e", type=int, default=100, help="epochs to train")
    parser.add_argument(
        "--frequency",
        "-f",
        type=int,
        default=10,
        help="take a snapshot every this many epochs; -1: only at the end",
    )
    parser.add_argument(
        "--image-interval",
        type=int,
        default=10,
        help="write a grid of generated digits every this many epochs",
    )
    parser.add_argument(
        "--device",
        "-d",
        default=None,
        type=parse_device_arg,
        help="-1 or 'cpu' for the host, 0, 'gpu' or 'gpu:N' for an accelerator",
    )
    parser.add_argument("--out", "-o", default="result_dcgan", help="output folder")
    parser.add_argument(
        "--resume", "-r", default=None, help="snapshot file to resume from"
    )
    parser.add_argument(
        "--autoload",
        action="store_true",
        help="resume from the newest snapshot in --out",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="an mnist.npz to train on instead of scikit-learn's digits",
    )
    parser.add_argument("--n-hidden", type=int, default=16, help="noise size")
    parser.add_argument(
        "--unit", "-u", type=int, default=128, help="units per hidden layer"
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and noise")
    parser.add_argument(
        "--max-iterations",
        type=int,
        default=None,
        help="stop after this many iterations (smoke runs)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar"
    )
    args = parser.parse_args(argv)
    if args.resume and args.autoload:
        parser.error("give either --resume or --autoload, not both")
    keras.utils.set_random_seed(args.seed)

    images, side = load_images(args.dataset)
    gen = build_generator(args.n_hidden, images.shape[1], args.unit)
    dis = build_discriminator(images.shape[1], args.unit)
    updater = GANUpdater(
        SerialIterator(images, args.batchsize),
        {
            "gen": keras.optimizers.Adam(args.lr, beta_1=0.5, name="opt_gen"),
            "dis": keras.optimizers.Adam(args.lr, beta_1=0.5, name="opt_dis"),
        },
        model={"gen": gen, "dis": dis},
        n_hidden=args.n_hidden,
        seed=args.seed,
        device=args.device,
    )
    stop = (
        (args.max_iterations, "iteration")
        if args.max_iterations
        else (args.epoch, "epoch")
    )
    trainer = ktrainer.Trainer(updater, stop, out=args.out)

    frequency = args.epoch if args.frequency == -1 else max(1, args.frequency)
    snapshot = extensions.snapshot(n_retains=2, autoload=args.autoload)
    trainer.extend(snapshot, trigger=(frequency, "epoch"))
    trainer.extend(
        GeneratedImages(gen, args.n_hidden, side, seed=args.seed),
        trigger=(args.image_interval, "epoch"),
    )
    trainer.extend(extensions.LogReport())
    trainer.extend(
        extensions.PlotReport(["gen/loss", "dis/loss"], "epoch", filename="loss.png")
    )
    trainer.extend(
        extensions.PrintReport(
            ["epoch", "iteration", "gen/loss", "dis/loss", "elapsed_time"]
        )
    )
    if not args.no_progress:
        trainer.extend(extensions.ProgressBar(update_interval=20))

    if args.resume:
        serializers.load_hdf5(args.resume, trainer)
        logger.info(
            "resumed from %s at iteration %d (epoch %d)",
            args.resume,
            updater.iteration,
            updater.epoch,
        )
    trainer.run()
    return trainer.get_extension("LogReport").log


class _StderrHandler(logging.Handler):
    """Writes records to whatever `sys.stderr` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def setup_logging() -> None:
    """Shows this script's and ktrainer's INFO messages.

    ktrainer's `snapshot(autoload=True)` logs which snapshot it resumed
    from, at which iteration and epoch; `--resume` logs the same here.

    The handler sits on the two loggers themselves: tensorflow's absl
    takes over the root logger and would drop INFO records.
    """
    for name in ("train_dcgan", "ktrainer"):
        named = logging.getLogger(name)
        named.setLevel(logging.INFO)
        named.propagate = False
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        named.addHandler(handler)


if __name__ == "__main__":
    setup_logging()
    main()
