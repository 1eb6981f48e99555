"""Imports of optional dependencies, with errors that name the pip extra.

matplotlib is optional: only `PlotReport` and `VariableStatisticsPlot`
need it. Importing it on first use keeps `import ktrainer` light and lets
every other feature work without it; when it is missing, an `ImportError`
says which extra to install. (`ProgressBar` draws its own bar and needs
no package.)
"""

from __future__ import annotations

import types


def _missing(feature: str, package: str, extra: str) -> ImportError:
    # ktrainer is installed from a checkout until it is on a package index,
    # so the message gives the command that works there too.
    return ImportError(
        f"{feature} needs {package}: pip install {package}, or the {extra} "
        f"extra (pip install '.[{extra}]' in a ktrainer checkout)"
    )


def import_matplotlib(feature: str = "Plotting") -> types.ModuleType:
    """Imports matplotlib with its object-oriented `Figure` and Agg canvas.

    Callers draw on `matplotlib.figure.Figure` attached to a
    `matplotlib.backends.backend_agg.FigureCanvasAgg`, which needs no
    pyplot state: the user's selected backend (interactive or not) stays as
    it was, and no window ever opens.

    Args:
        feature: what needs matplotlib, named in the error.
            Defaults to `'Plotting'`.

    Returns:
        The `matplotlib` module, with `matplotlib.figure` and
        `matplotlib.backends.backend_agg` imported.

    Raises:
        ImportError: if matplotlib is not installed; the message names the
            `plot` extra.
    """
    try:
        import matplotlib
        import matplotlib.backends.backend_agg
        import matplotlib.figure
    except ImportError as exc:
        raise _missing(feature, "matplotlib", "plot") from exc
    return matplotlib


def is_matplotlib_available() -> bool:
    """Returns whether matplotlib can be imported."""
    try:
        import_matplotlib()
    except ImportError:
        return False
    return True
