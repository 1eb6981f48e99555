"""`MultiWorkerMirroredStrategy`, 2 processes on 127.0.0.1, trains as one device."""

from __future__ import annotations

import json
import os

import _compare
import _dp_script
import _launch
import pytest

pytestmark = [pytest.mark.backend("tensorflow"), pytest.mark.slow]


def test_two_workers_match_one_device(tmp_path):
    order = _dp_script.interleaved_order(2)
    # The one-device reference first: every worker resumes its snapshot.
    expected = {k: _compare.reference(tmp_path, k, order=order) for k in _compare.KINDS}
    ports = [_launch.free_port() for _ in range(2)]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    outs = [str(tmp_path / f"worker{i}") for i in range(2)]
    workers = [
        _launch.start(
            "tf-multiworker",
            outs[i],
            TF_CONFIG=json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": i}}
            ),
            KTRAINER_TEST_REFERENCE=str(tmp_path),
        )
        for i in range(2)
    ]
    runs = _launch.finish(workers)
    assert [(r["rank"], r["world_size"], r["chief"]) for r in runs] == [
        (0, 2, True),
        (1, 2, False),
    ]
    assert runs[0]["replicas"] == 2
    for kind in _compare.KINDS:
        for run in runs:
            _compare.assert_matches(run[kind], expected[kind], split=2)
        _compare.assert_resumes_on_one_device(outs[0], kind, runs[0][kind])
        _compare.assert_resumes_across_process_counts(
            tmp_path, outs[0], kind, runs, order
        )
        assert os.path.exists(os.path.join(outs[0], kind, "log"))
        written = os.listdir(os.path.join(outs[1], kind))
        assert not [n for n in written if n == "log" or n.startswith("snapshot")]
    _compare.assert_evaluations([r["compiled"] for r in runs], replicas=1)
