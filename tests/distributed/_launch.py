"""Starting the distributed test scripts in subprocesses, with timeouts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

import ktrainer

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "_dp_script.py")
TIMEOUT = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env(**extra: str) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(ktrainer.__file__)))
    paths = [root, HERE, os.environ.get("PYTHONPATH")]
    return dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join(p for p in paths if p),
        **extra,
    )


def start(*args: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, SCRIPT, *args],
        env=env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(processes: list[subprocess.Popen]) -> list[dict]:
    """Waits for every process; returns their results or fails with output."""
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT)[0])
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
            process.communicate()
        pytest.fail(f"a distributed run did not finish in {TIMEOUT} s")
    results = []
    for process, output in zip(processes, outputs):
        lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
        if process.returncode != 0 or not lines:
            pytest.fail(f"distributed run failed ({process.returncode}):\n{output}")
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    return results
