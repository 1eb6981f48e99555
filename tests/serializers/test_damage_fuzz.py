"""Damage fuzz: a damaged trainer snapshot is an error or the same state.

`_damage_worker.py` saves a real trainer snapshot (a shuffled iterator,
Dropout, Adam, a learning-rate shift), then loads 58 damaged copies of it
(12 truncations, 34 flipped bits, 8 of them in the file's first 2 KiB,
and 12 zeroed 4 KiB blocks) into one fresh trainer. Each load must raise
and leave the trainer as it was, or load the snapshot's exact state;
never a different state, another exception, or a load that does not
return. The worker runs in a subprocess and reports each case on a line,
so a hanging load fails this test after a per-case timeout instead of
hanging the run.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading

import keras
import pytest

import ktrainer

pytestmark = pytest.mark.slow  # subprocesses that import Keras

WORKER = os.path.join(os.path.dirname(__file__), "_damage_worker.py")
N_CASES = 58
START_TIMEOUT = 240.0  # importing Keras and training 5 steps, on a busy CI machine
CASE_TIMEOUT = 30.0  # a load takes milliseconds


def _env() -> dict:
    env = dict(os.environ, KERAS_BACKEND=keras.config.backend())
    root = os.path.dirname(os.path.dirname(os.path.abspath(ktrainer.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _lines(process) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _next(lines: queue.Queue, timeout: float, waiting_for: str, seen: list) -> str:
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(
            f"no answer within {timeout} s while {waiting_for}; last lines:\n"
            + "\n".join(seen[-5:])
        )
    if line is None:
        pytest.fail("the worker ended early:\n" + "\n".join(seen[-20:]))
    seen.append(line)
    return line


def test_damaged_snapshots_raise_or_load_the_same_state(tmp_path):
    process = subprocess.Popen(
        [sys.executable, WORKER, str(tmp_path), "0", str(N_CASES)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    outcomes: dict[str, str] = {}
    try:
        lines = _lines(process)
        line = ""
        while not line.startswith("ready"):
            line = _next(lines, START_TIMEOUT, "building the snapshot", seen)
        while True:
            line = _next(lines, CASE_TIMEOUT, "waiting for a case", seen)
            if line == "done":
                break
            if line.endswith("-> start"):
                case = line[: -len(" start")]
                line = _next(lines, CASE_TIMEOUT, f"loading {case}", seen)
                outcomes[case] = line[len(case) + 1 :]
    finally:
        process.kill()
        process.wait(timeout=60)
        process.stdout.close()

    assert len(outcomes) == N_CASES
    wrong = {case: out for case, out in outcomes.items() if out.startswith("WRONG")}
    assert not wrong
    assert all(
        o.startswith(("error ValueError", "identical")) for o in outcomes.values()
    ), outcomes
    # Every truncation is detected, and most other damage too.
    truncations = [o for c, o in outcomes.items() if " truncate " in c]
    assert len(truncations) == 12
    assert all(o.startswith("error") for o in truncations)
    errors = [o for o in outcomes.values() if o.startswith("error")]
    assert len(errors) >= N_CASES * 3 // 4
    # Entries whose data changed are named with a checksum mismatch.
    assert any("damaged or truncated" in o for o in errors)
