"""Only the chief writes logs, prints, plots and snapshots."""

from __future__ import annotations

import io
import json
import os

import keras
import pytest
from conftest import make_classifier, make_dataset

from ktrainer import StandardUpdater, Trainer, distributed
from ktrainer._backend import distribute
from ktrainer.iterators import SerialIterator
from ktrainer.training import extensions


def _as_process(monkeypatch, rank: int) -> None:
    if keras.config.backend() == "tensorflow":
        # The engine's own setting: what MultiWorkerMirroredStrategy reads.
        cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
        config = {"cluster": cluster, "task": {"type": "worker", "index": rank}}
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    else:
        # Starting real processes is the multi-process tests' job.
        monkeypatch.setattr(distribute, "is_chief_process", lambda: rank == 0)


def _run(out: str) -> str:
    model = make_classifier()
    updater = StandardUpdater(SerialIterator(make_dataset(16), 4), model)
    trainer = Trainer(updater, (4, "iteration"), out=out)
    stream = io.StringIO()
    trainer.extend(extensions.LogReport(trigger=(2, "iteration")))
    trainer.extend(extensions.PrintReport(["iteration", "main/loss"], out=stream))
    trainer.extend(extensions.ProgressBar(update_interval=1, out=stream))
    trainer.extend(extensions.snapshot(), trigger=(2, "iteration"))
    if extensions.PlotReport.available():
        trainer.extend(extensions.PlotReport(["main/loss"], trigger=(2, "iteration")))
    trainer.run()
    # Every process aggregates, only the chief writes.
    assert [e["iteration"] for e in trainer.get_extension("LogReport").log] == [2, 4]
    return stream.getvalue()


@pytest.mark.parametrize("rank", [0, 1])
def test_only_the_chief_writes(monkeypatch, tmp_out, rank):
    _as_process(monkeypatch, rank)
    assert distributed.is_chief() is (rank == 0)
    printed = _run(tmp_out)
    written = sorted(os.listdir(tmp_out))
    if rank == 0:
        assert "log" in written
        assert "snapshot_iter_4" in written
        assert "main/loss" in printed
    else:
        assert written == []
        assert printed == ""
