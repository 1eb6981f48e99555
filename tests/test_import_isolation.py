"""`import ktrainer` loads only the selected backend's framework."""

from __future__ import annotations

import os
import subprocess
import sys

import keras


def test_import_pulls_in_no_other_backend():
    backend = keras.config.backend()
    code = (
        "import sys, ktrainer, ktrainer.training.extensions, ktrainer.callbacks;"
        "print(','.join(sorted(m for m in ('tensorflow', 'jax', 'torch') "
        "if m in sys.modules)))"
    )
    env = dict(os.environ, KERAS_BACKEND=backend)
    out = (
        subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    loaded = set(filter(None, out.split(",")))
    # keras itself imports jax whenever it is installed, so only tensorflow
    # and torch are checked.
    for framework in ("tensorflow", "torch"):
        if framework != backend:
            assert framework not in loaded, f"{framework} loaded under {backend}"
