"""Two gloo ranks on 127.0.0.1 train as one device on the global batch."""

from __future__ import annotations

import os

import _compare
import _dp_script
import _launch
import pytest

pytestmark = [pytest.mark.backend("torch"), pytest.mark.slow]


def test_two_gloo_ranks_match_one_device(tmp_path):
    order = _dp_script.interleaved_order(2)
    # The one-device reference first: every rank resumes its snapshot.
    expected = {k: _compare.reference(tmp_path, k, order=order) for k in _compare.KINDS}
    port = str(_launch.free_port())
    outs = [str(tmp_path / f"rank{r}") for r in range(2)]
    runs = _launch.finish(
        [
            _launch.start(
                "torch-gloo",
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
    for kind in _compare.KINDS:
        for run in runs:  # every rank holds the same weights and logs
            _compare.assert_matches(run[kind], expected[kind], split=2)
        _compare.assert_resumes_on_one_device(outs[0], kind, runs[0][kind])
        _compare.assert_resumes_across_process_counts(
            tmp_path, outs[0], kind, runs, order
        )
    _compare.assert_evaluations([r["compiled"] for r in runs], replicas=1)
    for run in runs:
        # One all-reduce per evaluation, none per report or key.
        evaluations = run["compiled"]["evaluations"]
        assert evaluations["calls_per_evaluation"]["all_reduce"] == 2
        assert evaluations["eval_func_calls"]["all_reduce"] == 1
    for run in runs:
        _check_guards(run)
    # The log and the snapshot are written once, by the chief.
    for kind in _compare.KINDS:
        assert os.path.exists(os.path.join(outs[0], kind, "log"))
        written = os.listdir(os.path.join(outs[1], kind))
        assert not [n for n in written if n == "log" or n.startswith("snapshot")]


def _check_guards(run: dict) -> None:
    guards = run["guards"]
    # Gradients are averaged before the optimizer sees them: clipping and
    # accumulation act on the global gradient, as on one device.
    for case in (
        "clipnorm",
        "global_clipnorm",
        "accumulation",
        "outside",
        "updater_outside_scope",
    ):
        assert guards[case] == "trained", guards[case]
    assert guards["batch_norm"].startswith("BatchNormalization layers")
    assert "under torch.distributed" in guards["batch_norm"]
