"""`keras.distribution.ModelParallel` over 2 host devices trains as one device."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.backend("jax"), pytest.mark.slow]

SCRIPT = pathlib.Path(__file__).with_name("_mp_script.py")


def test_model_parallel_layouts_shard_the_kernels_and_match_one_device(tmp_path):
    # The script asserts the kernels stay sharded along 'model', that the
    # weights match a single-device run, and that the snapshot resumes on
    # one device.
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "snapshot")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MATCH" in result.stdout
