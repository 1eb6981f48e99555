"""Crash and preemption resume, in real subprocesses, under the current backend.

`tests/_resume_script.py` trains with `snapshot(autoload=True, n_retains=2)`
every 4 iterations. One test kills it with SIGKILL three times, first in
the middle of a snapshot's write (its temporary file exists), then at
iterations and moments drawn at random (from a fixed seed), restarting it
each time, then lets it finish; the other sends SIGTERM to a run with a
`PreemptionHandler`, which writes a snapshot of that very iteration and
exits with status 143, then restarts it. Both must end with variables
bit-identical to an uninterrupted run's, the retained snapshots only,
and no temporary file left in the output directory.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from _resume_script import build_trainer, state_arrays

import ktrainer

pytestmark = pytest.mark.slow  # subprocesses that import Keras

SCRIPT = os.path.join(os.path.dirname(__file__), "_resume_script.py")
ITERATIONS = 24
SNAPSHOT_EVERY = 4
DELAY = 0.1  # seconds per iteration while a run waits to be killed
TIMEOUT = 300.0


def _env() -> dict:
    env = dict(os.environ, KERAS_BACKEND=keras.config.backend())
    root = os.path.dirname(os.path.dirname(os.path.abspath(ktrainer.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _command(
    tmp_path, delay: float, preempt: bool = False, save_delay: float = 0.0
) -> list[str]:
    command = [
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
        "--save-delay",
        str(save_delay),
    ]
    return [*command, "--preempt"] if preempt else command


def _read_marker(path) -> int:
    try:
        with open(path) as f:
            return int(f.read() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _signal_at(tmp_path, iteration: int, signum: int, wait: float, preempt=False):
    """Starts a run, signals it once it passed `iteration` (+ `wait` s).

    Returns the process, already signalled; the caller waits for it.
    """
    marker = tmp_path / "iteration.txt"
    marker.unlink(missing_ok=True)
    process = subprocess.Popen(
        _command(tmp_path, DELAY, preempt),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + TIMEOUT
    try:
        while _read_marker(marker) < iteration:
            if process.poll() is not None:
                output = process.stdout.read().decode(errors="replace")
                pytest.fail(f"the training script ended early:\n{output}")
            if time.monotonic() > deadline:
                pytest.fail("the training script did not reach the signal point")
            time.sleep(0.01)
        time.sleep(wait)
        process.send_signal(signum)
    except BaseException:
        process.kill()
        process.wait()
        process.stdout.close()
        raise
    return process


def _temporary_files(tmp_path) -> list[str]:
    try:
        return [n for n in os.listdir(tmp_path / "result") if n.endswith(".tmp")]
    except FileNotFoundError:
        return []


def _kill_mid_write(tmp_path) -> None:
    """Runs until a snapshot's temporary file exists, then SIGKILLs the run."""
    process = subprocess.Popen(
        _command(tmp_path, 0.0, save_delay=2.0),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + TIMEOUT
    try:
        while not _temporary_files(tmp_path):
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode(errors="replace")
                pytest.fail(f"no snapshot was being written:\n{output}")
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=TIMEOUT)
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def _finish(tmp_path, preempt: bool = False) -> str:
    finished = subprocess.run(
        _command(tmp_path, 0.0, preempt),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished.stdout


def _assert_exact_and_clean(tmp_path) -> None:
    result = tmp_path / "result"
    names = sorted(os.listdir(result))
    assert names == ["snapshot_iter_20", "snapshot_iter_24"]  # n_retains=2, no .tmp
    uninterrupted = build_trainer(str(tmp_path / "straight"), ITERATIONS)
    uninterrupted.run()
    expected = state_arrays(uninterrupted)
    with np.load(tmp_path / "weights.npz") as weights:
        assert sorted(weights.files) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(weights[key], value, err_msg=key)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_run_killed_three_times_resumes_to_the_uninterrupted_result(tmp_path):
    # First in the middle of the first snapshot's write: it leaves its
    # temporary file behind, which the next start removes.
    _kill_mid_write(tmp_path)
    assert _temporary_files(tmp_path)
    rng = random.Random(14)
    points = sorted(rng.sample(range(6, ITERATIONS - 1), 2))
    killed_at = []
    for point in points:
        process = _signal_at(tmp_path, point, signal.SIGKILL, rng.uniform(0, DELAY))
        process.wait(timeout=TIMEOUT)
        process.stdout.close()
        assert process.returncode == -signal.SIGKILL
        killed_at.append(_read_marker(tmp_path / "iteration.txt"))
    assert not (tmp_path / "weights.npz").exists()

    output = _finish(tmp_path)

    # The kill may land after the next iteration's snapshot, before its marker.
    last = killed_at[-1]
    newest = {n // SNAPSHOT_EVERY * SNAPSHOT_EVERY for n in (last, last + 1)}
    expected = {
        "resumed_from="
        + (str(tmp_path / "result" / f"snapshot_iter_{n}") if n else "None")
        for n in newest
    }
    assert expected & set(output.splitlines())
    _assert_exact_and_clean(tmp_path)


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_sigterm_writes_a_snapshot_and_the_restart_is_exact(tmp_path):
    process = _signal_at(tmp_path, 13, signal.SIGTERM, DELAY / 2, preempt=True)
    output, _ = process.communicate(timeout=TIMEOUT)
    process.stdout.close()
    output = output.decode(errors="replace")

    assert process.returncode == 128 + signal.SIGTERM, output
    stopped_at = _read_marker(tmp_path / "iteration.txt")
    assert 13 <= stopped_at < ITERATIONS
    assert "received SIGTERM: wrote a snapshot at iteration" in output
    # The iteration's own snapshot, with the periodic one before it (n_retains=2).
    snapshots = sorted(os.listdir(tmp_path / "result"))
    previous = (stopped_at - 1) // SNAPSHOT_EVERY * SNAPSHOT_EVERY
    assert snapshots == sorted(
        {f"snapshot_iter_{previous}", f"snapshot_iter_{stopped_at}"}
    )
    assert not (tmp_path / "weights.npz").exists()

    output = _finish(tmp_path, preempt=True)

    expected = "resumed_from=" + str(
        tmp_path / "result" / f"snapshot_iter_{stopped_at}"
    )
    assert expected in output.splitlines()
    _assert_exact_and_clean(tmp_path)
