"""`PlotReport`: plots averaged observations against epochs or iterations."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ktrainer import distributed
from ktrainer import reporter as reporter_module
from ktrainer._utils.lazy_import import import_matplotlib, is_matplotlib_available
from ktrainer.training import extension
from ktrainer.training._trigger_util import TriggerLike, get_trigger
from ktrainer.training.extensions import _util


def _save_figure_atomically(figure: Any, path: str, **savefig_kwargs: Any) -> None:
    """Saves a matplotlib `figure` so readers see the old file or the new one.

    The image goes through `atomic_write` (a temporary file in the same
    directory, then one `os.replace`), like the log, so it gets the
    permissions the umask gives any new file. The format comes from the
    file's extension (matplotlib's default, PNG, when it has none).
    """
    # Imported here, as in `_util`: the serializers package pulls in h5py.
    from ktrainer.serializers._atomic import atomic_write

    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fmt = os.path.splitext(name)[1][1:].lower() or None
    with atomic_write(path) as temp, open(temp, "wb") as f:
        figure.savefig(f, format=fmt, **savefig_kwargs)


def _new_figure(matplotlib: Any, **figure_kwargs: Any) -> Any:
    """A `Figure` on its own Agg canvas: no pyplot, no global backend change."""
    figure = matplotlib.figure.Figure(**figure_kwargs)
    matplotlib.backends.backend_agg.FigureCanvasAgg(figure)
    return figure


class PlotReport(extension.Extension):
    """Plots the interval means of observed values to an image file.

    The extension runs every iteration (its default trigger is
    `(1, 'iteration')`, its priority `PRIORITY_READER`), adding the
    iteration's values of `y_keys` from `trainer.observation` to a
    `DictSummary`, which keeps device values without waiting for them.
    Whenever its own `trigger` fires (every epoch by default), it
    computes each key's mean over the interval, appends the point
    `(x, mean)` to that key's series, where `x` is the updater's `'epoch'`
    or `'iteration'` count (or another key's mean) as chosen by `x_key`,
    draws every series in one figure and writes it to
    `os.path.join(trainer.out, filename)`, replacing the previous image
    atomically; then it starts a fresh summary. Nothing is written while
    no series has a point. When its trigger first fires, it warns once
    about keys that were not observed until then (a misspelt `'main/los'`,
    or a key that nobody reports), naming the keys that were.

    The figure is drawn with matplotlib's object-oriented API on an Agg
    canvas, so the user's matplotlib backend is never changed and no
    window opens. matplotlib is optional: without it the constructor
    raises an `ImportError` naming the `plot` extra, where
    Chainer warns and skips plotting; `PlotReport.available()` tells
    whether plotting works.

    A snapshot keeps the series (as one JSON string `_data`), the pending
    summary and the trigger's state, so a resumed run continues the same
    curves.

    Args:
        y_keys: the observation key, or keys, to plot.
        x_key: the x value of each point: `'iteration'`, `'epoch'` or one
            observed key. Defaults to `'epoch'`.
        trigger: when to add a point and write the figure: a trigger or a
            `(period, unit)` tuple. Defaults to `(1, 'epoch')`.
        postprocess: called as `postprocess(figure, axes, summary)` before
            the figure is written, with the matplotlib `Figure` and `Axes`
            and the interval's `DictSummary`; it may change the figure.
            Defaults to `None`.
        filename: the image's name under `trainer.out`; its extension
            picks the format. Defaults to `'plot.png'`.
        marker: the matplotlib marker of the points; `None` draws lines
            only. Defaults to `'x'`.
        grid: whether to draw the axis grid. Defaults to `True`.
        file_name: deprecated alias of `filename` (Chainer's older name).
    """

    needs_model_state = False

    def __init__(
        self,
        y_keys: str | Iterable[str],
        x_key: str = "epoch",
        trigger: TriggerLike = (1, "epoch"),
        postprocess: Callable[[Any, Any, Any], Any] | None = None,
        filename: str = "plot.png",
        marker: str | None = "x",
        grid: bool = True,
        **kwargs: Any,
    ) -> None:
        filename = _pop_file_name(type(self).__name__, filename, "plot.png", kwargs)
        import_matplotlib(type(self).__name__)
        if isinstance(y_keys, str):
            y_keys = (y_keys,)
        if y_keys is None or not isinstance(y_keys, Iterable):
            raise TypeError(
                "y_keys must be an observation key or an iterable of keys. "
                f"Received: y_keys={y_keys!r}"
            )
        y_keys = tuple(y_keys)
        if not all(isinstance(k, str) for k in y_keys):
            raise TypeError(
                f"y_keys must contain only str keys. Received: y_keys={y_keys!r}"
            )
        if not isinstance(x_key, str):
            raise TypeError(f"x_key must be a str. Received: x_key={x_key!r}")
        if postprocess is not None and not callable(postprocess):
            raise TypeError(
                f"postprocess must be callable or None. Received: {postprocess!r}"
            )
        self._x_key = x_key
        self._y_keys = y_keys
        self._trigger = get_trigger(trigger)
        self._postprocess = postprocess
        self._filename = filename
        self._marker = marker
        self._grid = grid
        self._summary = reporter_module.DictSummary()
        self._data: dict[str, list] = {k: [] for k in y_keys}
        # The keys observed until the first point, to warn about missing ones.
        self._seen_keys: set[str] | None = set()

    @staticmethod
    def available() -> bool:
        """Returns whether matplotlib is installed, so plots can be drawn."""
        return is_matplotlib_available()

    def __call__(self, trainer) -> None:
        """Adds this iteration's values; adds points and plots if triggered."""
        if not distributed.is_chief():
            return  # in a distributed run only the chief plots
        observation = trainer.observation
        self._summary.add({k: observation[k] for k in self._y_keys if k in observation})
        if self._seen_keys is not None:
            self._seen_keys.update(observation)
        if self._trigger(trainer):
            if self._seen_keys is not None:
                self._check_keys(self._seen_keys)
                self._seen_keys = None
            self._emit(trainer)

    def _check_keys(self, seen: set[str]) -> None:
        wanted = list(self._y_keys)
        if self._x_key not in ("epoch", "iteration"):
            wanted.append(self._x_key)
        _util.warn_missing_keys("PlotReport keys", wanted, seen)

    def _emit(self, trainer) -> None:
        summary = self._summary
        stats = {k: float(v) for k, v in summary.compute_mean().items()}
        stats["epoch"] = trainer.updater.epoch
        stats["iteration"] = trainer.updater.iteration
        x = stats.get(self._x_key)
        if x is not None:
            for key in self._y_keys:
                if key in stats:
                    self._data[key].append((x, stats[key]))
        self._plot(os.path.join(trainer.out, self._filename), summary)
        self._summary = reporter_module.DictSummary()

    def _plot(self, path: str, summary) -> None:
        matplotlib = import_matplotlib(type(self).__name__)
        figure = _new_figure(matplotlib)
        axes = figure.add_subplot(111)
        axes.set_xlabel(self._x_key)
        if self._grid:
            axes.grid()
        for key in self._y_keys:
            points = self._data.get(key)
            if points:
                xy = np.asarray(points, dtype=float)
                axes.plot(xy[:, 0], xy[:, 1], marker=self._marker, label=key)
        if not axes.has_data():
            return
        if self._postprocess is not None:
            self._postprocess(figure, axes, summary)
        legend = axes.legend(bbox_to_anchor=(1.05, 1), loc=2, borderaxespad=0.0)
        _save_figure_atomically(
            figure, path, bbox_extra_artists=(legend,), bbox_inches="tight"
        )

    @property
    def data(self) -> dict[str, list]:
        """The plotted points: `{y_key: [(x, y), ...]}`, oldest first."""
        return self._data

    def serialize(self, serializer) -> None:
        """Saves or loads the series, the pending summary and the trigger."""
        if hasattr(self._trigger, "serialize"):
            self._trigger.serialize(serializer["_trigger"])
        self._summary.serialize(serializer["_summary"])
        stored = json.loads(_util.as_str(serializer("_data", json.dumps(self._data))))
        self._data = {
            key: [tuple(point) for point in points] for key, points in stored.items()
        }
        for key in self._y_keys:
            self._data.setdefault(key, [])


def _pop_file_name(
    owner: str, filename: str, default: str, kwargs: dict[str, Any]
) -> str:
    """Resolves `file_name`, the Chainer v6 spelling of `filename`."""
    if "file_name" in kwargs:
        # Chainer compatibility
        file_name = kwargs.pop("file_name")
        if filename != default:
            raise TypeError(
                "pass the image's name as filename or as file_name, not both. "
                f"Received: filename={filename!r}, file_name={file_name!r}"
            )
        filename = file_name
    if kwargs:
        raise TypeError(
            f"{owner} got unexpected keyword arguments. Received: {sorted(kwargs)}"
        )
    if not isinstance(filename, str):
        raise TypeError(f"filename must be a str. Received: filename={filename!r}")
    if not filename:
        raise ValueError(
            f"filename must be a non-empty str. Received: filename={filename!r}"
        )
    return filename
