from __future__ import annotations

import re
import sys

import pytest

from ktrainer._utils.lazy_import import (
    import_matplotlib,
    import_tqdm,
    is_matplotlib_available,
)

MISSING_CASES = [
    ("matplotlib", import_matplotlib, "PlotReport", "plot"),
    ("tqdm", import_tqdm, "ProgressBar", "progress"),
]


@pytest.mark.parametrize(
    ("package", "importer", "feature", "extra"),
    MISSING_CASES,
    ids=[case[0] for case in MISSING_CASES],
)
def test_missing_package_error_names_the_extra(
    monkeypatch, package, importer, feature, extra
):
    monkeypatch.setitem(sys.modules, package, None)
    message = f"{feature} needs {package}: pip install 'ktrainer[{extra}]'"
    with pytest.raises(ImportError, match=f"^{re.escape(message)}$") as info:
        importer(feature)
    assert isinstance(info.value.__cause__, ImportError)


def test_import_matplotlib_loads_figure_and_agg_canvas():
    matplotlib = import_matplotlib("PlotReport")
    figure = matplotlib.figure.Figure()
    canvas = matplotlib.backends.backend_agg.FigureCanvasAgg(figure)
    figure.add_subplot(111).plot([0, 1], [1, 0])
    canvas.draw()
    width, height = canvas.get_width_height()
    assert width > 0
    assert height > 0


def test_import_tqdm_returns_the_module():
    tqdm = import_tqdm()
    assert list(tqdm.tqdm(range(3), disable=True)) == [0, 1, 2]


def test_is_matplotlib_available(monkeypatch):
    assert is_matplotlib_available() is True
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert is_matplotlib_available() is False
