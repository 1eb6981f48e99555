"""Smoke-runs the example scripts end to end on their bundled data.

Each example is loaded from its file and its `main(argv)` is called in
this process with tiny settings, under whichever `KERAS_BACKEND` the
suite runs with (tox runs the file once per backend).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import pathlib

import matplotlib.image
import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

# sklearn's digits split 1500 / 297 with batch size 64: 23.4 iterations per
# epoch, so epochs 1, 2, 3 end at iterations 24, 47, 71.
EPOCH_END = {1: 24, 2: 47, 3: 71}


def _load(relpath: str):
    path = EXAMPLES / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _snapshots(out: str) -> list[str]:
    return sorted(n for n in os.listdir(out) if n.startswith("snapshot_iter_"))


def test_train_mnist_runs_and_learns(tmp_out):
    example = _load("mnist/train_mnist.py")
    last = example.main(["--epoch", "3", "--out", tmp_out, "--no-progress"])
    assert last["epoch"] == 3
    assert last["validation/main/accuracy"] > 0.8
    for name in ("log", "loss.png", "accuracy.png"):
        assert os.path.exists(os.path.join(tmp_out, name)), name
    # One snapshot per epoch, the two newest kept.
    assert _snapshots(tmp_out) == ["snapshot_iter_47", "snapshot_iter_71"]
    with open(os.path.join(tmp_out, "log")) as f:
        log = json.load(f)
    assert [entry["epoch"] for entry in log] == [1, 2, 3]
    assert log[-1]["main/loss"] < log[0]["main/loss"]


def test_train_mnist_autoload_resumes_and_says_so(tmp_out, caplog):
    example = _load("mnist/train_mnist.py")
    example.main(["--epoch", "2", "--out", tmp_out, "--no-progress"])
    with caplog.at_level(logging.INFO, logger="ktrainer"):
        last = example.main(
            ["--epoch", "3", "--out", tmp_out, "--no-progress", "--autoload"]
        )
    # The resumed run starts from the epoch-2 snapshot and trains one more.
    assert last["epoch"] == 3
    assert last["iteration"] == EPOCH_END[3]
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "snapshot_iter_47" in m and "iteration 47" in m and "epoch 2" in m
        for m in messages
    ), messages


def test_train_mnist_resume_flag_loads_the_named_snapshot(tmp_out, caplog):
    example = _load("mnist/train_mnist.py")
    example.main(["--epoch", "2", "--out", tmp_out, "--no-progress"])
    snapshot = os.path.join(tmp_out, "snapshot_iter_24")
    with caplog.at_level(logging.INFO, logger="train_mnist"):
        last = example.main(
            ["--epoch", "3", "--out", tmp_out, "--no-progress", "--resume", snapshot]
        )
    assert last["iteration"] == EPOCH_END[3]
    with open(os.path.join(tmp_out, "log")) as f:
        epochs = [entry["epoch"] for entry in json.load(f)]
    # The epoch-1 snapshot holds the log up to epoch 1; epochs 2 and 3 follow.
    assert epochs == [1, 2, 3]
    assert any(
        f"resumed from {snapshot} at iteration 24 (epoch 1)" in r.getMessage()
        for r in caplog.records
    ), caplog.text


@pytest.mark.parametrize(
    ("frequency", "expected"),
    [("2", ["snapshot_iter_47"]), ("-1", ["snapshot_iter_71"])],
    ids=["every-2-epochs", "only-at-the-end"],
)
def test_train_mnist_frequency_sets_the_snapshot_interval(tmp_out, frequency, expected):
    example = _load("mnist/train_mnist.py")
    argv = ["--epoch", "3", "--out", tmp_out, "--no-progress", "--unit", "16"]
    example.main([*argv, "--frequency", frequency])
    assert _snapshots(tmp_out) == expected


def test_train_mnist_rejects_resume_with_autoload(tmp_out, capsys):
    example = _load("mnist/train_mnist.py")
    with pytest.raises(SystemExit):
        example.main(["--out", tmp_out, "--autoload", "--resume", "x"])
    assert "--resume or --autoload" in capsys.readouterr().err


def test_fit_with_extensions_example(tmp_out):
    example = _load("fit_with_extensions/train_fit_with_extensions.py")
    last = example.main(["--epoch", "2", "--out", tmp_out])
    assert last["epoch"] == 2
    assert os.path.exists(os.path.join(tmp_out, "log"))


# -- DCGAN -------------------------------------------------------------------

LN2 = math.log(2)
# Tiny settings for the resume tests: 15 iterations per epoch.
TINY_GAN = ["--batchsize", "128", "--unit", "32", "--no-progress"]


def test_train_dcgan_losses_move_as_a_gans_do(tmp_out):
    example = _load("dcgan/train_dcgan.py")
    log = example.main(
        ["--epoch", "3", "--out", tmp_out, "--no-progress", "--image-interval", "1"]
    )
    assert [entry["epoch"] for entry in log] == [1, 2, 3]
    gen = [entry["gen/loss"] for entry in log]
    dis = [entry["dis/loss"] for entry in log]
    assert all(math.isfinite(v) for v in gen + dis)
    # Both start at chance (2 ln 2 for the discriminator, ln 2 for the
    # generator). The discriminator learns first, so its loss drops below
    # chance and the generator's rises above it; neither side collapses.
    assert all(0.5 < d < 2 * LN2 for d in dis), dis
    assert gen[-1] > LN2 + 0.2, gen
    assert all(g < 5.0 for g in gen), gen
    # The generated digits change as the generator learns.
    first, last = (
        matplotlib.image.imread(os.path.join(tmp_out, f"digits_epoch_{e}.png"))
        for e in (1, 3)
    )
    assert first.shape == last.shape
    assert first.shape[0] >= 400
    assert np.abs(first - last).mean() > 0.01


def test_train_dcgan_autoload_resumes_exactly(tmp_path):
    example = _load("dcgan/train_dcgan.py")
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    every_epoch = ["--frequency", "1", "--image-interval", "1"]
    log = example.main([*TINY_GAN, *every_epoch, "--epoch", "3", "--out", straight])
    example.main([*TINY_GAN, *every_epoch, "--epoch", "2", "--out", resumed])
    resumed_log = example.main(
        [*TINY_GAN, *every_epoch, "--epoch", "3", "--out", resumed, "--autoload"]
    )
    # The resumed run holds the whole log, and its third epoch is the
    # uninterrupted run's: same noise, same batches, same optimizer state.
    assert [entry["epoch"] for entry in resumed_log] == [1, 2, 3]
    for key in ("gen/loss", "dis/loss"):
        assert resumed_log[-1][key] == pytest.approx(log[-1][key], rel=1e-5), key
    assert sorted(os.listdir(resumed)) == sorted(os.listdir(straight))


def test_train_dcgan_resume_flag_loads_the_named_snapshot(tmp_out, caplog):
    example = _load("dcgan/train_dcgan.py")
    example.main([*TINY_GAN, "--frequency", "1", "--epoch", "2", "--out", tmp_out])
    snapshot = os.path.join(tmp_out, "snapshot_iter_15")
    with caplog.at_level(logging.INFO, logger="train_dcgan"):
        log = example.main(
            [*TINY_GAN, "--epoch", "2", "--out", tmp_out, "--resume", snapshot]
        )
    assert [entry["iteration"] for entry in log] == [15, 29]
    assert any(
        f"resumed from {snapshot} at iteration 15 (epoch 1)" in r.getMessage()
        for r in caplog.records
    ), caplog.text


@pytest.mark.parametrize(
    "relpath", ["mnist/train_mnist.py", "dcgan/train_dcgan.py"], ids=["mnist", "dcgan"]
)
def test_device_flag_takes_chainer_ints_and_refuses_missing_devices(tmp_out, relpath):
    example = _load(relpath)
    # `-d -1` is Chainer's "the host": an int, not the string "-1".
    one_step = ["--max-iterations", "1", "--out", tmp_out, "--no-progress"]
    example.main(["-d", "-1", *one_step])
    with pytest.raises(ValueError, match="gpu:99"):
        example.main(["-d", "gpu:99", "--out", tmp_out, "--no-progress"])
