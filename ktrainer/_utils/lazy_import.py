"""Imports of optional dependencies, with errors that name the pip extra.

matplotlib and tqdm are optional: only `PlotReport`,
`VariableStatisticsPlot` and `ProgressBar` need them. Importing them on
first use keeps `import ktrainer` light and lets every other feature work
without them; a missing one gets an `ImportError` that says which extra
to install.
"""

from __future__ import annotations

import types


def _missing(feature: str, package: str, extra: str) -> ImportError:
    return ImportError(f"{feature} needs {package}: pip install 'ktrainer[{extra}]'")


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
            `ktrainer[plot]` extra.
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


def import_tqdm(feature: str = "ProgressBar") -> types.ModuleType:
    """Imports tqdm.

    Args:
        feature: what needs tqdm, named in the error.
            Defaults to `'ProgressBar'`.

    Returns:
        The `tqdm` module (the bar class is `tqdm.tqdm`).

    Raises:
        ImportError: if tqdm is not installed; the message names the
            `ktrainer[progress]` extra.
    """
    try:
        import tqdm
    except ImportError as exc:
        raise _missing(feature, "tqdm", "progress") from exc
    return tqdm
