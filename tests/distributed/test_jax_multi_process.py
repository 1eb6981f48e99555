"""2 jax processes (`keras.distribution.initialize`) train as one device."""

from __future__ import annotations

import os

import _compare
import _dp_script
import _launch
import pytest

pytestmark = [pytest.mark.backend("jax"), pytest.mark.slow]


def test_two_processes_match_one_device(tmp_path):
    order = _dp_script.interleaved_order(2)
    # The one-device reference first: every process resumes its snapshot.
    expected = {k: _compare.reference(tmp_path, k, order=order) for k in _compare.KINDS}
    port = str(_launch.free_port())
    outs = [str(tmp_path / f"process{r}") for r in range(2)]
    runs = _launch.finish(
        [
            _launch.start(
                "jax-multiprocess",
                outs[r],
                str(r),
                "2",
                port,
                KTRAINER_TEST_REFERENCE=str(tmp_path),
            )
            for r in range(2)
        ]
    )
    assert [(r["rank"], r["world_size"], r["chief"]) for r in runs] == [
        (0, 2, True),
        (1, 2, False),
    ]
    for run in runs:
        assert run["replicas"] == 2
        # Each process feeds 4 examples; the step sees a global batch of 8
        # in shards of 4.
        assert run["shard_shapes"]
        assert all(shape[0] == 4 for shape in run["shard_shapes"])
    for kind in _compare.KINDS:
        for run in runs:
            _compare.assert_matches(run[kind], expected[kind], split=1)
        _compare.assert_resumes_on_one_device(outs[0], kind, runs[0][kind])
        _compare.assert_resumes_across_process_counts(
            tmp_path, outs[0], kind, runs, order
        )
        assert os.path.exists(os.path.join(outs[0], kind, "log"))
        written = os.listdir(os.path.join(outs[1], kind))
        assert not [n for n in written if n == "log" or n.startswith("snapshot")]
    _compare.assert_evaluations([r["compiled"] for r in runs], replicas=1)
