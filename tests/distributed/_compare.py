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
