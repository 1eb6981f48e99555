"""`keras.distribution.DataParallel` over 2 host devices trains as one device."""

from __future__ import annotations

import _compare
import _launch
import pytest

pytestmark = [pytest.mark.backend("jax"), pytest.mark.slow]

TWO_DEVICES = "--xla_force_host_platform_device_count=2"


def test_data_parallel_matches_one_device(tmp_path):
    out = str(tmp_path / "dp")
    (run,) = _launch.finish([_launch.start("jax-dp", out, XLA_FLAGS=TWO_DEVICES)])
    assert run["backend"] == "jax"
    assert run["replicas"] == 2
    # The step sees the global batch (8) as shards of 4, one per device.
    assert run["shard_shapes"]
    assert all(shape[0] == 4 for shape in run["shard_shapes"]), run["shard_shapes"]
    for kind in _compare.KINDS:
        _compare.assert_matches(run[kind], _compare.reference(tmp_path, kind), split=1)
        _compare.assert_resumes_on_one_device(out, kind, run[kind])
    # The Evaluator splits each batch over the 2 devices.
    _compare.assert_evaluations([run["compiled"]], replicas=2)
