"""`MirroredStrategy` over 2 logical CPUs trains as one device does."""

from __future__ import annotations

import _compare
import _launch
import pytest

pytestmark = [pytest.mark.backend("tensorflow"), pytest.mark.slow]


def test_mirrored_strategy_matches_one_device(tmp_path):
    out = str(tmp_path / "mirrored")
    (run,) = _launch.finish([_launch.start("tf-mirrored", out)])
    assert run["backend"] == "tensorflow"
    assert run["replicas"] == 2
    for kind in _compare.KINDS:
        _compare.assert_matches(run[kind], _compare.reference(tmp_path, kind), split=2)
        _compare.assert_resumes_on_one_device(out, kind, run[kind])
    # The Evaluator splits each batch over the 2 replicas.
    _compare.assert_evaluations([run["compiled"]], replicas=2)
    # The same run tried settings the strategy would compute wrongly.
    _check_guards(run)


GUARDS = {
    "clipnorm": "ValueError: optimizer clipnorm is not supported under Mirrored",
    "global_clipnorm": "ValueError: optimizer global_clipnorm is not supported",
    "accumulation": "ValueError: optimizer gradient_accumulation_steps is not",
    # Refused when the updater is built, not at the first update.
    "outside": "ValueError: optimizer must be created inside the same strategy",
    "updater_outside_scope": "trained",
    "batch_norm": "BatchNormalization layers ['batch_normalization'] normalize",
}


def _check_guards(run: dict) -> None:
    for case, start in GUARDS.items():
        assert run["guards"][case].startswith(start), run["guards"][case]
    assert "Received: clipnorm=1.0" in run["guards"]["clipnorm"]
