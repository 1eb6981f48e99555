"""`ParameterStatistics`: reports statistics of the model's weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras

from ktrainer import reporter as reporter_module
from ktrainer.training import extension
from ktrainer.training._trigger_util import TriggerLike, get_trigger

_PERCENTILE_SIGMAS = (0.13, 2.28, 15.87, 50.0, 84.13, 97.72, 99.87)


def _mean(x):
    return keras.ops.mean(x)


def _std(x):
    return keras.ops.std(x)


def _min(x):
    return keras.ops.min(x)


def _max(x):
    return keras.ops.max(x)


def _zeros(x):
    # Not keras.ops.count_nonzero: on torch it warns about `.T` of a 0-d tensor.
    return keras.ops.sum(keras.ops.cast(keras.ops.equal(x, 0), "int32"))


def _percentile(x):
    q = [p / 100.0 for p in _PERCENTILE_SIGMAS]
    return keras.ops.quantile(x, q)


def _is_layer(obj: Any) -> bool:
    return isinstance(obj, keras.layers.Layer)


class ParameterStatistics(extension.Extension):
    """Reports statistics of the weights of Keras models or layers.

    The extension runs every iteration (its default trigger is
    `(1, 'iteration')`, its priority `PRIORITY_WRITER`, so readers such as
    `LogReport` see its values in the same iteration). Each call computes,
    on the device with `keras.ops`, every statistic of every floating-point
    variable in `layer.weights` of each of `links` (trainable or not, so
    batch-normalization moving statistics are included), and adds them to
    a `DictSummary` without waiting for the device. Whenever its own
    `trigger` fires (every epoch by default) it reports the means over the
    interval, as Python floats, with `ktrainer.report`, and starts a fresh
    summary.

    Keys follow Chainer's convention with the variable's Keras path in
    place of the link and parameter names:

        '{prefix}/{variable.path}/data/{statistic}'

    e.g. `'classifier/hidden/kernel/data/mean'` (no leading `prefix/` when
    `prefix` is `None`). A statistic that returns several values (such as
    `'percentile'`) gets one key per value, suffixed `/0`, `/1`, ....

    The default statistics, as in Chainer, are `'mean'`, `'std'`, `'min'`,
    `'max'`, `'zeros'` (the number of exact zeros) and `'percentile'` (the
    0.13, 2.28, 15.87, 50, 84.13, 97.72 and 99.87 percentiles, i.e. the
    median and +-1, 2, 3 sigma of a normal distribution, with NumPy's
    linear interpolation).

    Gradients are not reported: Keras does not keep them on the variables
    between steps (Chainer's `param.grad`), so `report_grads` defaults to
    `False` and `True` is refused.

    A snapshot keeps the pending summary and the trigger's state.

    Args:
        links: a Keras model or layer, or a list of them, whose weights
            are observed.
        statistics: `'default'` for the statistics above, or a dict from
            name to a function that takes a 1-D tensor and returns a scalar
            or a 1-D tensor (use `keras.ops` so it runs on the device), or
            `None` for none. Defaults to `'default'`.
        report_params: whether to report statistics of the weights.
            Defaults to `True`.
        report_grads: must be `False`; see above. Defaults to `False`.
        prefix: prepended to every key, followed by `/`. Defaults to `None`.
        trigger: when to report the interval's means: a trigger or a
            `(period, unit)` tuple. Defaults to `(1, 'epoch')`.
        skip_nan_params: if `True`, a variable that contains a NaN reports
            NaN for every statistic instead of computing it. Defaults to
            `False`.
    """

    default_name = "parameter_statistics"
    priority = extension.PRIORITY_WRITER
    model_state = "read"

    report_key_template = "{prefix}{variable_path}/{attr_name}/{function_name}"
    """How keys are built; `prefix` is empty or ends with `/`."""

    default_statistics: Mapping[str, Callable[[Any], Any]] = {
        "mean": _mean,
        "std": _std,
        "min": _min,
        "max": _max,
        "zeros": _zeros,
        "percentile": _percentile,
    }
    """The statistics used by `statistics='default'`."""

    def __init__(
        self,
        links: keras.layers.Layer | list[keras.layers.Layer],
        statistics: str | Mapping[str, Callable[[Any], Any]] | None = "default",
        report_params: bool = True,
        report_grads: bool = False,
        prefix: str | None = None,
        trigger: TriggerLike = (1, "epoch"),
        skip_nan_params: bool = False,
    ) -> None:
        if not isinstance(links, (list, tuple)):
            links = (links,)
        for link in links:
            if not _is_layer(link):
                raise TypeError(
                    "links must be a Keras model or layer, or a list of them. "
                    f"Received: an element of type {type(link).__name__}"
                )
        if report_grads:
            raise ValueError(
                "report_grads must be False: Keras keeps no gradients on the "
                "variables between steps, so there are none to report. "
                f"Received: report_grads={report_grads!r}"
            )
        if isinstance(statistics, str):
            if statistics != "default":
                raise ValueError(
                    "statistics must be 'default', a dict of functions or None. "
                    f"Received: statistics={statistics!r}"
                )
            statistics = self.default_statistics
        if statistics is None:
            statistics = {}
        if not isinstance(statistics, Mapping):
            raise TypeError(
                "statistics must be 'default', a dict of functions or None. "
                f"Received: statistics of type {type(statistics).__name__}"
            )
        self._statistics: dict[str, Callable[[Any], Any]] = {}
        for name, function in statistics.items():
            self.register_statistics(name, function)
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(
                f"prefix must be a str or None. Received: prefix={prefix!r}"
            )
        self._links = tuple(links)
        self._attrs = ("data",) if report_params else ()
        self._prefix = prefix
        self._trigger = get_trigger(trigger)
        self._skip_nan_params = bool(skip_nan_params)
        self._summary = reporter_module.DictSummary()

    def register_statistics(self, name: str, function: Callable[[Any], Any]) -> None:
        """Adds a statistic, reported under `name` from the next call on.

        Args:
            name: the statistic's name, the last part of its keys.
            function: takes a 1-D tensor of a variable's values and returns
                a scalar or a 1-D tensor.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str. Received: name={name!r}")
        if not callable(function):
            raise TypeError(
                f"the function of statistic {name!r} must be callable. "
                f"Received: {function!r}"
            )
        self._statistics[name] = function

    def __call__(self, trainer) -> None:
        """Adds this iteration's statistics; reports the means if triggered."""
        self._summary.add(self._compute())
        if self._trigger(trainer):
            reporter_module.report(self._summary.compute_mean())
            self._summary = reporter_module.DictSummary()

    def _compute(self) -> dict[str, Any]:
        """The statistics of the current weights, as device tensors."""
        statistics: dict[str, Any] = {}
        if not self._attrs or not self._statistics:
            return statistics
        prefix = self._prefix + "/" if self._prefix else ""
        for variable in self._variables():
            values = keras.ops.reshape(
                keras.ops.stop_gradient(keras.ops.convert_to_tensor(variable)), (-1,)
            )
            has_nan = (
                keras.ops.any(keras.ops.isnan(values))
                if self._skip_nan_params
                else None
            )
            for function_name, function in self._statistics.items():
                value = function(values)
                if has_nan is not None:
                    value = keras.ops.where(has_nan, float("nan"), value)
                key = self.report_key_template.format(
                    prefix=prefix,
                    variable_path=variable.path,
                    attr_name="data",
                    function_name=function_name,
                )
                _store(statistics, key, value)
        return statistics

    def _variables(self) -> list:
        seen: set[int] = set()
        variables = []
        for link in self._links:
            for variable in link.weights:
                if id(variable) in seen or not keras.backend.is_float_dtype(
                    variable.dtype
                ):
                    continue
                seen.add(id(variable))
                variables.append(variable)
        return variables

    def serialize(self, serializer) -> None:
        """Saves or loads the pending summary and the trigger's state."""
        if hasattr(self._trigger, "serialize"):
            self._trigger.serialize(serializer["_trigger"])
        self._summary.serialize(serializer["_summary"])


def _store(statistics: dict[str, Any], key: str, value: Any) -> None:
    """Stores a scalar under `key`, or each element of a vector under `key/i`."""
    shape = tuple(getattr(value, "shape", ()))
    size = 1
    for dim in shape:
        size *= dim
    if size > 1:
        for i, element in enumerate(keras.ops.unstack(keras.ops.reshape(value, (-1,)))):
            statistics[f"{key}/{i}"] = element
    elif shape:
        statistics[key] = keras.ops.reshape(value, ())
    else:
        statistics[key] = value
