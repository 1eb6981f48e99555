"""Smoke-runs `examples/distributed/train_data_parallel.py` on CPU devices."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import _launch
import keras
import pytest

pytestmark = pytest.mark.slow

EXAMPLE = (
    pathlib.Path(__file__).resolve().parents[2]
    / "examples"
    / "distributed"
    / "train_data_parallel.py"
)


def _start(out: str, *flags: str, **env: str) -> subprocess.Popen:
    command = [sys.executable, str(EXAMPLE), "--max-iterations", "12", "--unit", "64"]
    return subprocess.Popen(
        [*command, "--out", out, *flags],
        env=_launch.env(KERAS_BACKEND=keras.config.backend(), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _outputs(processes) -> list[str]:
    try:
        outputs = [p.communicate(timeout=_launch.TIMEOUT)[0] for p in processes]
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
            p.communicate()
        pytest.fail("the example did not finish in time")
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output
    return outputs


def test_example_trains_on_two_replicas(tmp_path):
    out = str(tmp_path / "result")
    if keras.config.backend() == "torch":
        port = str(_launch.free_port())
        ranks = [
            _start(
                out,
                RANK=str(r),
                WORLD_SIZE="2",
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            )
            for r in range(2)
        ]
        chief, other = _outputs(ranks)
        assert "LAST" not in other  # only the chief prints
        expected = "2 replicas, 2 process(es), global batch 64"
    else:
        (chief,) = _outputs([_start(out, "--cpu-devices", "2")])
        expected = "2 replicas, 1 process(es), global batch 64"
    assert expected in chief
    last = json.loads(chief.split("LAST ", 1)[1].splitlines()[0])
    assert last["iteration"] == 12
    assert last["validation/main/accuracy"] > 0.25  # chance is 0.1
    assert os.path.exists(os.path.join(out, "log"))
