"""Checks shared by the distributed tests: a run matches one device."""

from __future__ import annotations

import os

import _dp_script
import numpy as np

KINDS = ("compiled", "custom")


def reference(tmp_path, kind: str, order=None) -> dict:
    """The same training on one device, in this (single-device) process."""
    out = str(tmp_path / f"reference-{kind}")
    return _dp_script.train(kind == "custom", out, order=order)


def assert_matches(run: dict, expected: dict, *, split: int) -> None:
    """Same weights and logs as one device; each replica saw 1/split of a batch.

    The logs include the Evaluator's results (compiled models).
    """
    for got, want in zip(run["weights"], expected["weights"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)
    assert len(run["log"]) == len(expected["log"]) == 3
    for got, want in zip(run["log"], expected["log"]):
        assert (got["epoch"], got["iteration"]) == (want["epoch"], want["iteration"])
        keys = {k for k in want if k.startswith(("main/", "validation/"))}
        assert keys == {k for k in got if k.startswith(("main/", "validation/"))}
        for key in keys - {"main/examples"}:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
        if "main/examples" in want:
            assert want["main/examples"] == _dp_script.GLOBAL_BATCH
            assert got["main/examples"] == _dp_script.GLOBAL_BATCH / split


def assert_resumes_on_one_device(out: str, kind: str, run: dict) -> None:
    """The run's snapshot resumes on one device (and in the run's distribution).

    Resumed in this single-device process, the loaded weights are the
    run's; if the run also resumed its snapshot in its own distribution,
    both continue to the same weights.
    """
    snapshot = os.path.join(out, kind, f"snapshot_iter_{_dp_script.ITERATIONS}")
    resumed = _dp_script.resume_on_one_device(kind == "custom", snapshot)
    assert resumed["iteration"] == _dp_script.ITERATIONS
    for got, want in zip(resumed["weights"], run["weights"]):
        np.testing.assert_array_equal(got, want)
    there = run.get("resumed")
    if there is not None:
        assert there["iteration"] == _dp_script.ITERATIONS
        for got, want in zip(there["continued"], resumed["continued"]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)


EVALUATED_WAYS = ("whole", "whole_again", "scattered", "own", "eval_func")


def assert_evaluations(runs: list, *, replicas: int) -> None:
    """The Evaluator's results are one device's `model.evaluate`, on every rank.

    `runs` are the compiled runs' results of every process. Several
    processes reduce once per evaluation; `replicas` in one process split
    each batch among them.
    """
    expected = _dp_script.reference_evaluation(runs[0]["weights"])
    first = runs[0]["evaluations"]
    for run in runs:
        got = run["evaluations"]
        for way in EVALUATED_WAYS:
            if way not in got:
                assert len(runs) == 1
                assert way in ("scattered", "own")
                continue
            keys = ["main/loss"] if way == "eval_func" else sorted(expected)
            assert sorted(got[way]) == keys, (way, got[way])
            for key in keys:
                np.testing.assert_allclose(
                    got[way][key], expected[key], rtol=1e-5, atol=1e-6, err_msg=way
                )
            # The same on every rank, to the bit.
            assert got[way] == first[way], way
        if len(runs) > 1:
            assert got["calls_per_evaluation"]["sum"] == 2  # two evaluations
            assert got["eval_func_calls"]["sum"] == 1
            if "all_reduce" in got["calls_per_evaluation"]:
                # torch: nothing else talks to the other ranks (no per-report
                # or per-key collective).
                assert got["calls_per_evaluation"]["all_reduce"] in (0, 2)
                assert got["eval_func_calls"]["all_reduce"] in (0, 1)
    if replicas > 1:
        sizes = first["sizes_seen"]
        assert sizes, "the distributed test step was not used"
        for entry in sizes:
            if isinstance(entry[-1], bool):  # jax: size, shard size, split
                size, shard, split = entry
                assert shard == (size // replicas if split else size), entry
                assert not split or size % replicas == 0, entry
            else:  # tensorflow: the part of each replica
                assert len(entry) == replicas
                assert max(entry) - min(entry) <= 1


def assert_position(resumed: dict, world: int) -> None:
    """Resumed at the global position of ITERATIONS global batches."""
    done = _dp_script.ITERATIONS * _dp_script.GLOBAL_BATCH
    epoch, position = divmod(done, _dp_script.N_EXAMPLES)
    assert resumed["iteration"] == _dp_script.ITERATIONS
    assert resumed["position"][:2] == [epoch, position // world], resumed["position"]
    assert resumed["position"][2] == done / _dp_script.N_EXAMPLES


def assert_resumes_across_process_counts(
    tmp_path, out: str, kind: str, runs: list, order
) -> None:
    """Snapshots cross between 1 and N processes at the global position.

    The N-process run's snapshot resumes on one device (over the examples
    in `order`, whose global batches are the N processes' batches side
    by side) and the one-device reference's snapshot resumed in every
    process of the run; all continue to the weights the reference
    reaches from its own snapshot.
    """
    custom = kind == "custom"
    world = len(runs)
    reference = _dp_script.resume_on_one_device(
        custom, _dp_script._snapshot(str(tmp_path), kind), order=order
    )
    assert_position(reference, 1)
    snapshot = os.path.join(out, kind, f"snapshot_iter_{_dp_script.ITERATIONS}")
    resumed = _dp_script.resume_on_one_device(custom, snapshot, order=order)
    assert_position(resumed, 1)
    for got, want in zip(resumed["weights"], runs[0][kind]["weights"]):
        np.testing.assert_array_equal(got, want)
    continued = [resumed] + [run[kind]["resumed_from_one"] for run in runs]
    for run in runs:
        assert_position(run[kind]["resumed_from_one"], world)
    for result in continued:
        for got, want in zip(result["continued"], reference["continued"]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)
