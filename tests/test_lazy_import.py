from __future__ import annotations

import pathlib
import re
import sys

import pytest

from ktrainer._utils.lazy_import import (
    import_matplotlib,
    is_matplotlib_available,
)

MISSING_CASES = [
    ("matplotlib", import_matplotlib, "PlotReport", "plot"),
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
    message = (
        f"{feature} needs {package}: pip install {package}, or the {extra} "
        f"extra (pip install '.[{extra}]' in a ktrainer checkout)"
    )
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


def test_is_matplotlib_available(monkeypatch):
    assert is_matplotlib_available() is True
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert is_matplotlib_available() is False


# The pyproject extras that install a package for one feature, and the
# importer that needs it; the others install backends or tooling.
FEATURE_EXTRAS = {"plot": ("matplotlib", import_matplotlib)}
OTHER_EXTRAS = {"tensorflow", "jax", "torch", "test", "examples"}


def test_every_feature_extra_installs_what_an_importer_needs():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("runs from a source checkout")
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    # An extra that nothing imports (tqdm in `progress` once) is dead weight.
    assert set(extras) - OTHER_EXTRAS == set(FEATURE_EXTRAS)
    for extra, (package, _) in FEATURE_EXTRAS.items():
        assert any(req.startswith(package) for req in extras[extra])


def test_progress_bar_needs_no_optional_package(monkeypatch):
    import io

    from ktrainer.testing import get_trainer_with_mock_updater
    from ktrainer.training.extensions import ProgressBar

    monkeypatch.setitem(sys.modules, "tqdm", None)
    out = io.StringIO()
    trainer = get_trainer_with_mock_updater((4, "iteration"), iter_per_epoch=2)
    trainer.extend(ProgressBar(update_interval=2, out=out))
    trainer.run()
    assert "iters/sec" in out.getvalue()
