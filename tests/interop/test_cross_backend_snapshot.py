"""A snapshot written under each Keras backend loads and trains under each other.

Runs only with `KTRAINER_INTEROP=1` (the tox `interop` environment, which
installs all three backends): each backend runs in its own subprocess.
A backend whose framework is not installed is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

import ktrainer

BACKENDS = ("tensorflow", "jax", "torch")
SCRIPT = os.path.join(os.path.dirname(__file__), "_interop_script.py")
TIMEOUT = 300


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


AVAILABLE = [b for b in BACKENDS if _installed(b)]


def _env(backend: str) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(ktrainer.__file__)))
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [root, tests, os.environ.get("PYTHONPATH")]
    return dict(
        os.environ,
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join(p for p in paths if p),
    )


def _start(backend: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, SCRIPT, *args],
        env=_env(backend),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen, what: str) -> str:
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{what} timed out:\n{output}")
    assert process.returncode == 0, f"{what} failed:\n{output}"
    return output


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory) -> str:
    """One snapshot per installed backend, written in parallel subprocesses."""
    directory = str(tmp_path_factory.mktemp("interop"))
    writers = {b: _start(b, "write", directory) for b in AVAILABLE}
    for backend, process in writers.items():
        _finish(process, f"writing the {backend} snapshot")
    return directory


@pytest.fixture(scope="module")
def results(snapshot_dir) -> dict:
    """Each backend loads every backend's snapshot, in parallel subprocesses."""
    loaders = {b: _start(b, "load", snapshot_dir, *AVAILABLE) for b in AVAILABLE}
    found = {}
    for backend, process in loaders.items():
        output = _finish(process, f"loading under {backend}")
        for line in output.splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
                found[result["source"], result["target"]] = result
    return found


PAIRS = [(s, t) for s in BACKENDS for t in BACKENDS]


@pytest.mark.parametrize(
    ("source", "target"), PAIRS, ids=[f"{s}-to-{t}" for s, t in PAIRS]
)
def test_snapshot_loads_and_training_continues(results, source, target):
    if source not in AVAILABLE or target not in AVAILABLE:
        pytest.skip(f"needs {source} and {target} installed")
    result = results[source, target]

    assert result["mismatched"] == []  # loaded values equal the saved ones
    assert result["iteration_after_load"] == 4
    assert result["final_iteration"] == 8
    assert len(result["losses"]) == 4
    assert all(math.isfinite(loss) for loss in result["losses"])
    assert result["weights_changed"]
