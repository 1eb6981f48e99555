"""Crash resume: a run killed with SIGKILL, restarted with autoload, ends exact.

`tests/_resume_script.py` trains with `snapshot(autoload=True)` in a
subprocess under the current backend. The test kills it mid-run, starts it
again, and compares its final variables with an uninterrupted run's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from _resume_script import build_trainer, state_arrays

import ktrainer

SCRIPT = os.path.join(os.path.dirname(__file__), "_resume_script.py")
ITERATIONS = 24
SNAPSHOT_EVERY = 4
KILL_AT = 14  # snapshots 4, 8 and 12 exist (n_retains=2 keeps 8 and 12)


def _env() -> dict:
    env = dict(os.environ, KERAS_BACKEND=keras.config.backend())
    root = os.path.dirname(os.path.dirname(os.path.abspath(ktrainer.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _command(tmp_path, delay: float) -> list[str]:
    return [
        sys.executable,
        SCRIPT,
        "--out",
        str(tmp_path / "result"),
        "--iterations",
        str(ITERATIONS),
        "--snapshot-every",
        str(SNAPSHOT_EVERY),
        "--marker",
        str(tmp_path / "iteration.txt"),
        "--weights",
        str(tmp_path / "weights.npz"),
        "--delay",
        str(delay),
    ]


def _read_marker(path) -> int:
    try:
        with open(path) as f:
            return int(f.read() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _run_until_killed(tmp_path, timeout: float = 300.0) -> int:
    process = subprocess.Popen(
        _command(tmp_path, delay=0.2),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    try:
        while _read_marker(tmp_path / "iteration.txt") < KILL_AT:
            if process.poll() is not None:
                output = process.stdout.read().decode(errors="replace")
                pytest.fail(f"the training script ended early:\n{output}")
            if time.monotonic() > deadline:
                pytest.fail("the training script did not reach the kill point")
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    return _read_marker(tmp_path / "iteration.txt")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    killed_at = _run_until_killed(tmp_path)
    assert KILL_AT <= killed_at < ITERATIONS
    assert not (tmp_path / "weights.npz").exists()

    resumed = subprocess.run(
        _command(tmp_path, delay=0.0),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    newest = killed_at // SNAPSHOT_EVERY * SNAPSHOT_EVERY
    expected_line = "resumed_from=" + str(
        tmp_path / "result" / f"snapshot_iter_{newest}"
    )
    assert expected_line in resumed.stdout.splitlines()
    snapshots = sorted(
        n for n in os.listdir(tmp_path / "result") if n.startswith("snapshot_iter_")
    )
    assert snapshots == ["snapshot_iter_20", "snapshot_iter_24"]  # n_retains=2

    uninterrupted = build_trainer(str(tmp_path / "straight"), ITERATIONS)
    uninterrupted.run()
    expected = state_arrays(uninterrupted)
    with np.load(tmp_path / "weights.npz") as weights:
        assert sorted(weights.files) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(weights[key], value, err_msg=key)
