"""Every import path in API.md exposes its names, and `__all__` is exact."""

from __future__ import annotations

import importlib

import pytest

CONTRACT = {
    "ktrainer": [
        "Trainer",
        "StandardUpdater",
        "Reporter",
        "report",
        "report_scope",
        "get_current_reporter",
    ],
    "ktrainer.training": [
        "Trainer",
        "Updater",
        "StandardUpdater",
        "Extension",
        "make_extension",
        "PRIORITY_WRITER",
        "PRIORITY_EDITOR",
        "PRIORITY_READER",
        "get_trigger",
        "extensions",
        "triggers",
        "updaters",
    ],
    "ktrainer.training.updaters": ["StandardUpdater"],
    "ktrainer.training.triggers": [
        "IntervalTrigger",
        "ManualScheduleTrigger",
        "MinValueTrigger",
        "MaxValueTrigger",
        "BestValueTrigger",
        "EarlyStoppingTrigger",
        "OnceTrigger",
        "TimeTrigger",
    ],
    "ktrainer.training.extensions": [
        "Evaluator",
        "LogReport",
        "PrintReport",
        "ProgressBar",
        "snapshot",
        "snapshot_object",
        "ExponentialShift",
        "LinearShift",
        "MultistepShift",
        "StepShift",
        "PolynomialShift",
        "InverseShift",
        "WarmupShift",
        "observe_lr",
        "observe_value",
        "PlotReport",
        "VariableStatisticsPlot",
        "ParameterStatistics",
        "FailOnNonNumber",
        "MicroAverage",
    ],
    "ktrainer.reporter": [
        "Reporter",
        "report",
        "report_scope",
        "get_current_reporter",
        "Summary",
        "DictSummary",
    ],
    "ktrainer.iterators": ["SerialIterator", "MultithreadIterator"],
    "ktrainer.dataset": ["concat_examples", "to_device", "Iterator"],
    "ktrainer.serializers": [
        "save_hdf5",
        "load_hdf5",
        "save_npz",
        "load_npz",
        "HDF5Serializer",
        "HDF5Deserializer",
        "DictionarySerializer",
        "NpzDeserializer",
    ],
    "ktrainer.testing": ["get_trainer_with_mock_updater"],
    "ktrainer.callbacks": ["KerasCallbackExtension", "ExtensionsCallback"],
    "ktrainer.distributed": ["rank", "world_size", "is_chief", "scatter_dataset"],
}


@pytest.mark.parametrize(("path", "names"), CONTRACT.items(), ids=list(CONTRACT))
def test_contract_names_import(path, names):
    module = importlib.import_module(path)
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{path} lacks {missing}"
    assert set(names) <= set(module.__all__)


def _isort_key(name: str):
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("path", list(CONTRACT))
def test_all_is_sorted_and_public(path):
    module = importlib.import_module(path)
    public = sorted(name for name in module.__all__ if hasattr(module, name))
    # "isort-style" order, as ruff's RUF022 keeps it: CONSTANTS, Classes, rest.
    assert list(module.__all__) == sorted(module.__all__, key=_isort_key)
    assert public == sorted(module.__all__), "every __all__ name must exist"
