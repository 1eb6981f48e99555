"""Smoke-runs the example scripts end to end on their bundled data."""

from __future__ import annotations

import importlib.util
import os
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _load(relpath: str):
    path = EXAMPLES / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_mnist_runs_and_learns(tmp_out):
    example = _load("mnist/train_mnist.py")
    last = example.main(["--epoch", "3", "--out", tmp_out, "--no-progress"])
    assert last["epoch"] == 3
    assert last["validation/main/accuracy"] > 0.8
    for name in ("log", "loss.png", "accuracy.png", "snapshot_iter_71"):
        assert os.path.exists(os.path.join(tmp_out, name)), name


def test_train_mnist_autoload_resumes(tmp_out):
    example = _load("mnist/train_mnist.py")
    example.main(["--epoch", "2", "--out", tmp_out, "--no-progress"])
    last = example.main(
        ["--epoch", "3", "--out", tmp_out, "--no-progress", "--autoload"]
    )
    # The resumed run starts from the epoch-2 snapshot and trains one more.
    assert last["epoch"] == 3
    assert last["iteration"] == 71


@pytest.mark.skipif(
    not (EXAMPLES / "fit_with_extensions/train_fit_with_extensions.py").exists(),
    reason="example not present",
)
def test_fit_with_extensions_example(tmp_out):
    example = _load("fit_with_extensions/train_fit_with_extensions.py")
    example.main(["--epoch", "2", "--out", tmp_out])
    assert os.path.exists(os.path.join(tmp_out, "log"))
