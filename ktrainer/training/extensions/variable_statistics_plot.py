"""`VariableStatisticsPlot`: plots how the statistics of weights evolve."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from ktrainer._utils.lazy_import import import_matplotlib, is_matplotlib_available
from ktrainer.training import extension
from ktrainer.training._trigger_util import TriggerLike, get_trigger
from ktrainer.training.extensions.plot_report import (
    _new_figure,
    _pop_file_name,
    _save_figure_atomically,
)

_COLOR = "#1f77b4"  # matplotlib's first default color, 'C0'
_BAND_ALPHA = 0.2
# Chainer's defaults: the extremes, the median and +-1, 2, 3 sigma of a normal.
_PERCENTILE_SIGMAS = (0, 0.13, 2.28, 15.87, 50, 84.13, 97.72, 99.87, 100)


def _unpack_targets(targets: Any, variables: list, unbuilt: list) -> None:
    """Collects the variables of `targets`; notes layers not built yet."""
    if isinstance(targets, keras.Variable):
        variables.append(targets)
    elif isinstance(targets, keras.layers.Layer):
        if not targets.built:
            unbuilt.append(targets)
        variables.extend(targets.weights)
    elif isinstance(targets, (list, tuple)):
        for target in targets:
            _unpack_targets(target, variables, unbuilt)
    else:
        raise TypeError(
            "targets must be a Keras model, layer or variable, or a list of "
            f"them. Received: an element of type {type(targets).__name__}"
        )


class _Reservoir:
    """A uniform random sample of at most `size` rows, kept on the host.

    Rows may be device tensors: a row is placed (or dropped) at once, as
    reservoir sampling decides without looking at values, but copied to
    the host only in `flush`, in one transfer for all pending rows.
    """

    def __init__(self, size: int, width: int) -> None:
        self.size = size
        self.data = np.zeros((size, width), dtype=np.float32)
        self.idxs = np.zeros((size,), dtype=np.int64)
        self.counter = 0
        self._pending: dict[int, Any] = {}
        self._rng = np.random.default_rng()

    def add(self, row: Any, idx: int) -> None:
        if self.counter < self.size:
            slot = self.counter
        elif self._rng.random() < self.size / (self.counter + 1):
            slot = int(self._rng.integers(self.size))
        else:
            slot = None
        if slot is not None:
            self._pending[slot] = row
            self.idxs[slot] = idx
        self.counter += 1

    def flush(self) -> None:
        if not self._pending:
            return
        slots = list(self._pending)
        rows = keras.ops.stack([self._pending[s] for s in slots])
        self.data[slots] = keras.ops.convert_to_numpy(rows)
        self._pending.clear()

    def get_data(self) -> tuple[np.ndarray, np.ndarray]:
        """The sampled `(idxs, rows)`, sorted by index."""
        self.flush()
        n = min(self.counter, self.size)
        order = np.argsort(self.idxs[:n], kind="stable")
        return self.idxs[:n][order], self.data[:n][order]


class VariableStatisticsPlot(extension.Extension):
    """Plots the mean, standard deviation and percentiles of weights.

    The extension runs every iteration (its default trigger is
    `(1, 'iteration')`, its priority `PRIORITY_READER`). Each call
    concatenates all floating-point variables of `targets` (for a model or
    layer, all of `layer.weights`), computes their mean, standard
    deviation and `percentile_sigmas` percentiles on the device with
    `keras.ops`, and keeps the row of statistics, tagged with the
    iteration, in a reservoir sample of at most `max_sample_size` rows
    (each call is kept with equal probability once more calls than that
    were made). The rows stay on the device until the extension's own
    `trigger` fires (every epoch by default); then they are copied to the
    host in one transfer, and the figure is drawn and written to
    `os.path.join(trainer.out, filename)`, replacing the previous image
    atomically.

    The figure has one column, titled `'data'`: the mean with the standard
    deviation as error bars on top, and the percentiles below as shaded
    bands between symmetric pairs (the median as a line), against the
    iteration. It is drawn with matplotlib's object-oriented API on an Agg
    canvas, so the user's matplotlib backend is never changed. Without
    matplotlib the constructor raises an `ImportError` naming
    the `plot` extra, where Chainer warns and skips plotting.

    Gradients are not plotted: Keras keeps no gradients on the variables
    between steps (Chainer's `Variable.grad`), so `report_grad` defaults to
    `False` and `True` is refused.

    A snapshot keeps the sample and the trigger's state.

    Args:
        targets: a Keras model, layer or variable, or a list of them.
        max_sample_size: the most rows (iterations) kept for the plot.
            Defaults to `1000`.
        report_data: must be `True`: the weights are what is plotted.
            Defaults to `True`.
        report_grad: must be `False`; see above. Defaults to `False`.
        plot_mean: whether to plot the mean. Defaults to `True`.
        plot_std: whether to plot the standard deviation.
            Defaults to `True`.
        percentile_sigmas: percentiles to plot, in `[0, 100]`; a number or
            a sequence. Defaults to
            `(0, 0.13, 2.28, 15.87, 50, 84.13, 97.72, 99.87, 100)`.
        trigger: when to write the figure: a trigger or a `(period, unit)`
            tuple. Defaults to `(1, 'epoch')`.
        filename: the image's name under `trainer.out`; its extension
            picks the format. Defaults to `'statistics.png'`.
        figsize: the matplotlib figure size in inches. Defaults to `None`
            (matplotlib's default).
        marker: the matplotlib marker of the mean and median lines.
            Defaults to `None` (lines only).
        grid: whether to draw the axis grids. Defaults to `True`.
        file_name: deprecated alias of `filename` (Chainer's older name).
    """

    needs_model_state = True

    def __init__(
        self,
        targets: Any,
        max_sample_size: int = 1000,
        report_data: bool = True,
        report_grad: bool = False,
        plot_mean: bool = True,
        plot_std: bool = True,
        percentile_sigmas: float | Sequence[float] = _PERCENTILE_SIGMAS,
        trigger: TriggerLike = (1, "epoch"),
        filename: str = "statistics.png",
        figsize: tuple[float, float] | None = None,
        marker: str | None = None,
        grid: bool = True,
        **kwargs: Any,
    ) -> None:
        default = "statistics.png"
        filename = _pop_file_name(type(self).__name__, filename, default, kwargs)
        import_matplotlib(type(self).__name__)
        variables: list = []
        unbuilt: list = []
        _unpack_targets(targets, variables, unbuilt)
        if not variables and not unbuilt:
            raise ValueError(
                "targets must hold at least one variable to collect statistics "
                f"of. Received: targets={targets!r} with no variables"
            )
        if report_grad:
            raise ValueError(
                "report_grad must be False: Keras keeps no gradients on the "
                "variables between steps, so there are none to plot. "
                f"Received: report_grad={report_grad!r}"
            )
        if not report_data:
            raise ValueError(
                "report_data must be True: the weights are the only thing "
                f"plotted. Received: report_data={report_data!r}"
            )
        if isinstance(max_sample_size, bool) or not isinstance(
            max_sample_size, numbers.Integral
        ):
            raise TypeError(
                "max_sample_size must be an int. "
                f"Received: max_sample_size={max_sample_size!r}"
            )
        if max_sample_size < 1:
            raise ValueError(
                "max_sample_size must be positive. "
                f"Received: max_sample_size={max_sample_size!r}"
            )
        percentiles = _check_percentiles(percentile_sigmas)
        if not (plot_mean or plot_std or percentiles):
            raise ValueError(
                "at least one of plot_mean, plot_std and percentile_sigmas must "
                "select something to plot. Received: plot_mean=False, "
                f"plot_std=False, percentile_sigmas={percentile_sigmas!r}"
            )
        self._targets = targets
        self._plot_mean = bool(plot_mean)
        self._plot_std = bool(plot_std)
        self._percentiles = percentiles
        self._trigger = get_trigger(trigger)
        self._filename = filename
        self._figsize = figsize
        self._marker = marker
        self._grid = grid
        width = int(self._plot_mean) + int(self._plot_std) + len(percentiles)
        self._samples = _Reservoir(int(max_sample_size), width)

    @staticmethod
    def available() -> bool:
        """Returns whether matplotlib is installed, so plots can be drawn."""
        return is_matplotlib_available()

    def __call__(self, trainer) -> None:
        """Samples this iteration's statistics; writes the figure if triggered."""
        self._samples.add(self._statistics(), trainer.updater.iteration)
        if self._trigger(trainer):
            self._plot(os.path.join(trainer.out, self._filename))

    def _statistics(self) -> Any:
        """The row of statistics of the current weights, as a device tensor."""
        variables: list = []
        _unpack_targets(self._targets, variables, [])
        flat = [
            keras.ops.reshape(
                keras.ops.cast(
                    keras.ops.stop_gradient(keras.ops.convert_to_tensor(v)), "float32"
                ),
                (-1,),
            )
            for v in variables
            if keras.backend.is_float_dtype(v.dtype)
        ]
        if not flat:
            raise RuntimeError(
                "VariableStatisticsPlot found no floating-point variables in "
                f"its targets. Received: targets={self._targets!r}"
            )
        x = keras.ops.concatenate(flat) if len(flat) > 1 else flat[0]
        row = []
        if self._plot_mean:
            row.append(keras.ops.reshape(keras.ops.mean(x), (1,)))
        if self._plot_std:
            row.append(keras.ops.reshape(keras.ops.std(x), (1,)))
        if self._percentiles:
            q = [p / 100.0 for p in self._percentiles]
            row.append(keras.ops.cast(keras.ops.quantile(x, q), "float32"))
        return keras.ops.concatenate(row) if len(row) > 1 else row[0]

    def _plot(self, path: str) -> None:
        matplotlib = import_matplotlib(type(self).__name__)
        color = matplotlib.colors.to_rgba(_COLOR)
        band = (*color[:3], _BAND_ALPHA)
        n_moments = int(self._plot_mean) + int(self._plot_std)
        nrows = int(n_moments > 0) + int(bool(self._percentiles))
        figure = _new_figure(matplotlib, figsize=self._figsize)
        axes = figure.subplots(nrows, 1, sharex=True, squeeze=False)[:, 0]
        idxs, data = self._samples.get_data()
        axes[0].set_title("data")
        row = 0
        if n_moments:
            ax = axes[row]
            if self._plot_mean and self._plot_std:
                ax.errorbar(
                    idxs,
                    data[:, 0],
                    data[:, 1],
                    color=color,
                    ecolor=band,
                    label="mean, std",
                    marker=self._marker,
                )
            else:
                label = "mean" if self._plot_mean else "std"
                ax.plot(idxs, data[:, 0], color=color, label=label, marker=self._marker)
            row += 1
        if self._percentiles:
            self._plot_percentiles(axes[row], idxs, data[:, n_moments:], color, band)
        for ax in axes:
            ax.legend()
            if self._grid:
                ax.grid()
                ax.set_axisbelow(True)
        _save_figure_atomically(figure, path)

    def _plot_percentiles(self, ax, idxs, data, color, band) -> None:
        # Symmetric pairs (first and last, second and second to last, ...)
        # become shaded bands; an odd middle percentile becomes a line.
        n = data.shape[1]
        for i in range(n // 2):
            label = "percentile" if i == n // 2 - 1 and n % 2 == 0 else "_nolegend_"
            ax.fill_between(
                idxs,
                data[:, i],
                data[:, n - 1 - i],
                label=label,
                color=band,
                linewidth=0,
            )
        if n % 2:
            ax.plot(
                idxs,
                data[:, n // 2],
                color=color,
                label="percentile",
                marker=self._marker,
            )
        ax.set_xlabel("iteration")

    def serialize(self, serializer) -> None:
        """Saves or loads the sampled statistics and the trigger's state."""
        if hasattr(self._trigger, "serialize"):
            self._trigger.serialize(serializer["_trigger"])
        samples = self._samples
        samples.flush()
        samples.counter = int(serializer("counter", samples.counter))
        samples.idxs = serializer("idxs", samples.idxs)
        samples.data = serializer("data", samples.data)


def _check_percentiles(percentile_sigmas: Any) -> tuple[float, ...]:
    if percentile_sigmas is None:
        return ()
    if isinstance(percentile_sigmas, numbers.Real):
        percentile_sigmas = (percentile_sigmas,)
    if not isinstance(percentile_sigmas, Sequence) or not all(
        isinstance(p, numbers.Real) and not isinstance(p, bool)
        for p in percentile_sigmas
    ):
        raise TypeError(
            "percentile_sigmas must be a number or a sequence of numbers. "
            f"Received: percentile_sigmas={percentile_sigmas!r}"
        )
    if not all(0 <= p <= 100 for p in percentile_sigmas):
        raise ValueError(
            "percentile_sigmas must lie in [0, 100]. "
            f"Received: percentile_sigmas={percentile_sigmas!r}"
        )
    return tuple(float(p) for p in percentile_sigmas)
