"""The Reporter: named observations collected during training, and summaries.

Code anywhere in a training step calls `report({'loss': loss}, observer)`;
the current `Reporter` writes the value under the observer's registered name
(`'main/loss'`) into the observation dict of the active scope. Extensions
such as `LogReport` then average observations over many iterations with
`DictSummary`.
"""

from __future__ import annotations

import collections
import contextlib
import json
import numbers
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import keras
import numpy as np

from ktrainer import _backend
from ktrainer._backend import distribute
from ktrainer.serializers import Deserializer

__all__ = [
    "DictSummary",
    "Reporter",
    "Summary",
    "get_current_reporter",
    "report",
    "report_scope",
]


_thread_local = threading.local()


def _get_reporters() -> list[Reporter]:
    """This thread's stack of current reporters (the innermost last)."""
    try:
        return _thread_local.reporters
    except AttributeError:
        reporters = _thread_local.reporters = []
        return reporters


def _detached(value: Any) -> Any:
    """`value` cut from the autograd graph, so reports do not keep it alive."""
    return _backend.detached(value)


class Reporter:
    """Collects observed values under names prefixed by their observer.

    Values that users want to watch (losses, accuracies, statistics of
    activations) are reported to the current reporter, which writes them
    into its `observation` dict. A value reported with an `observer` (any
    object registered with `add_observer`, usually a model or layer) is
    stored under `'<observer name>/<key>'`, so the same code reports
    `'main/loss'` during training and `'validation/main/loss'` inside an
    evaluator whose reporter registers the model as `'validation/main'`.

    The `Trainer` owns one reporter with every model (and its nested layers)
    registered, and makes it current around each update with `scope`.
    Inside that scope, the module-level `report` reaches it from anywhere.

    Observers are told apart by identity (`id(observer)`), not equality.

    Example:

    ```python
    reporter = Reporter()
    model = keras.Sequential([...])
    reporter.add_observer("main", model)
    observation = {}
    with reporter.scope(observation):
        report({"loss": 0.5}, model)
    # observation == {"main/loss": 0.5}
    ```

    Attributes:
        observation: the dict that reports are written to; `scope` swaps
            it for the dict it is given.
    """

    def __init__(self) -> None:
        self._observer_names: dict[int, str] = {}
        self.observation: dict[str, Any] = {}

    def __enter__(self) -> Reporter:
        """Makes this reporter the current one."""
        _get_reporters().append(self)
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        """Makes the previously current reporter current again."""
        _get_reporters().pop()

    @contextlib.contextmanager
    def scope(self, observation: dict[str, Any]) -> Iterator[None]:
        """Makes this reporter current and directs its reports to `observation`.

        Both changes are undone when the `with` block exits, also on an
        exception.

        Args:
            observation: the dict that receives every value reported inside
                the `with` block.
        """
        old = self.observation
        self.observation = observation
        self.__enter__()
        try:
            yield
        finally:
            self.__exit__(None, None, None)
            self.observation = old

    def add_observer(self, name: str, observer: Any) -> None:
        """Registers `observer` so that its reports are named `'<name>/<key>'`.

        Args:
            name: the prefix of the observer's values.
            observer: any object; it is identified by `id(observer)`.
        """
        self._observer_names[id(observer)] = name

    def add_observers(self, prefix: str, observers: Iterable[tuple[str, Any]]) -> None:
        """Registers several observers, each named `prefix + name`.

        Args:
            prefix: prepended to each observer's name.
            observers: `(name, observer)` pairs.
        """
        for name, observer in observers:
            self._observer_names[id(observer)] = prefix + name

    def report(self, values: Mapping[str, Any], observer: Any = None) -> None:
        """Writes `values` into the current observation.

        Values are stored as given (a backend tensor stays a tensor, so
        reporting never waits for the device); torch tensors are detached
        from their autograd graph first. When several torch processes
        train together (an initialized `torch.distributed` group), each
        value is the mean over the processes: every process must report
        the same keys in the same order.

        Args:
            values: observed values by key.
            observer: a registered observer whose name prefixes every key,
                or `None` to store the keys unchanged. Defaults to `None`.

        Raises:
            KeyError: if `observer` was not registered.
        """
        if not isinstance(values, Mapping):
            raise TypeError(
                "values must be a dict of observed values. "
                f"Received: values of type {type(values).__name__}"
            )
        if distribute.reduces_reports():
            # Each process stepped on its own share: report the mean over
            # processes, in one collective for the whole dict.
            values = distribute.mean_over_processes(values)
        observation = self.observation
        if observer is None:
            for key, value in values.items():
                observation[key] = _detached(value)
            return
        name = self._observer_names.get(id(observer))
        if name is None:
            raise KeyError(
                "observer must be registered to this reporter with "
                f"add_observer(name, observer) first. Received: observer={observer!r}"
            )
        for key, value in values.items():
            observation[f"{name}/{key}"] = _detached(value)


def get_current_reporter() -> Reporter:
    """Returns the current (innermost) reporter.

    Raises:
        RuntimeError: if no reporter is current.
    """
    reporters = _get_reporters()
    if not reporters:
        raise RuntimeError(
            "There is no current reporter: enter one with `with reporter:` "
            "or `with reporter.scope(observation):` first."
        )
    return reporters[-1]


def report(values: Mapping[str, Any], observer: Any = None) -> None:
    """Reports `values` to the current reporter, if there is one.

    This is how models, loss functions and extensions publish values: the
    call costs almost nothing and does nothing outside a reporter scope,
    so the same code runs with and without a trainer.

    Args:
        values: observed values by key; tensors are stored as they are.
        observer: a registered observer whose name prefixes every key, or
            `None` to store the keys unchanged. Defaults to `None`.

    Raises:
        KeyError: if `observer` is not registered to the current reporter.
    """
    reporters = _get_reporters()
    if reporters:
        reporters[-1].report(values, observer)


@contextlib.contextmanager
def report_scope(observation: dict[str, Any]) -> Iterator[None]:
    """Directs the current reporter's reports to `observation` for a block.

    Same as `get_current_reporter().scope(observation)`, except that the
    reporter is not pushed onto the stack a second time.

    Args:
        observation: the dict that receives every value reported inside
            the `with` block.

    Raises:
        RuntimeError: if no reporter is current.
    """
    current = get_current_reporter()
    old = current.observation
    current.observation = observation
    try:
        yield
    finally:
        current.observation = old


def _is_host_scalar(x: Any) -> bool:
    """Whether `x` is a host number that can be folded immediately."""
    if type(x) in (float, int, bool):
        return True
    if isinstance(x, (np.ndarray, np.generic)):
        return x.shape == () and x.dtype.kind in "biuf"
    return isinstance(x, numbers.Real)


def _is_scalar(x: Any) -> bool:
    """Whether `x` is a number, or an array, tensor or variable of shape ()."""
    if _is_host_scalar(x):
        return True
    shape = getattr(x, "shape", None)
    if shape is None or isinstance(x, (np.ndarray, np.generic)):
        return False
    try:
        return len(shape) == 0
    except TypeError:  # a symbolic tensor of unknown rank
        return False


def _check_scalar(x: Any, argument: str) -> None:
    if _is_scalar(x):
        return
    shape = getattr(x, "shape", None)
    if shape is not None and not isinstance(x, np.generic) and len(shape):
        raise ValueError(
            f"{argument} must be a scalar: a number or an array or tensor "
            f"of shape (). Received: {argument} with shape {tuple(shape)}"
        )
    raise TypeError(
        f"{argument} must be a number or a scalar array or tensor. "
        f"Received: {argument} of type {type(x).__name__}"
    )


def _snapshot(x: Any) -> Any:
    """A value that later writes to `x` (a variable) do not change."""
    if isinstance(x, keras.Variable):
        return keras.ops.copy(keras.ops.stop_gradient(x))
    return _detached(x)


def _to_float64(values: list) -> np.ndarray:
    """Copies scalars (numbers and tensors) to the host as one float64 array.

    Each tensor is read on its own: stacking first would cost a device op
    per value anyway, and under jax a compilation per distinct count. It
    is read through the backend's no-copy host view, which is consumed at
    once; `keras.ops.convert_to_numpy` costs several times more per value.
    The first read waits for the device; the rest are already computed.
    """
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        if _is_host_scalar(value):
            out[i] = value
        else:
            try:
                out[i] = _backend.host_view(value)
            except (AttributeError, TypeError):  # another framework's tensor
                out[i] = keras.ops.convert_to_numpy(value)
    return out


class Summary:
    """Running weighted mean and standard deviation of a stream of scalars.

    `add` is meant to be called every iteration with values that may still
    live on an accelerator. Host numbers are folded into the running sums
    at once; tensors are only kept in a list, and are copied to the host
    all together when a result is asked for, when the summary is
    serialized, or every `fold_every` values to bound memory. So `add`
    never waits for the device, and a fold waits only once.

    Values are read when they are folded, not when they are added, so a
    tensor must not be changed in place after it is added (Keras variables
    are copied on `add` for this reason).

    Sums are kept in float64 on the host; results are Python floats,
    whatever the type of the values (Chainer returns the values' own array
    type).
    """

    fold_every: int = 1000
    """Pending tensors that trigger a fold into the host sums."""

    def __init__(self) -> None:
        self._x = 0.0
        self._x2 = 0.0
        self._n = 0.0
        self._values: list = []
        self._weights: list = []
        self._stacked: list = []  # fused runs' values, one vector per run

    def add(self, value: Any, weight: Any = 1) -> None:
        """Adds a scalar with a weight.

        Args:
            value: a number, or a NumPy array, backend tensor or Keras
                variable of shape ().
            weight: the weight of `value`, of the same kinds. Defaults to `1`.

        Raises:
            ValueError: if `value` or `weight` is an array that is not of
                shape ().
            TypeError: if `value` or `weight` is not numeric.
        """
        if not (_is_host_scalar(value) and _is_host_scalar(weight)):
            _check_scalar(value, "value")
            _check_scalar(weight, "weight")
        self._add_checked(value, weight)

    def _add_checked(self, value: Any, weight: Any) -> None:
        """`add` for a value and weight already known to be scalars."""
        if _is_host_scalar(value) and _is_host_scalar(weight):
            value, weight = float(value), float(weight)
            self._x += weight * value
            self._x2 += weight * value * value
            self._n += weight
            return
        self._values.append(_snapshot(value))
        self._weights.append(weight if type(weight) is int else _snapshot(weight))
        if len(self._values) >= self.fold_every:
            self._fold()

    def add_stacked(self, values: Any) -> None:
        """Adds one value per iteration of a fused run, each of weight 1.

        Args:
            values: an array or tensor of shape `(k,)`, such as what a
                fused update reports (`Trainer(max_fused_steps=...)`).
        """
        shape = getattr(values, "shape", None)
        if shape is None or len(shape) != 1:
            raise ValueError(
                "values must be an array or tensor of shape (k,). Received: "
                f"values with shape {None if shape is None else tuple(shape)}"
            )
        self._stacked.append(_snapshot(values))
        if len(self._stacked) >= self.fold_every:
            self._fold()

    def _fold(self) -> None:
        """Adds the pending values into the host sums and forgets them."""
        for values in self._stacked:
            try:
                x = np.asarray(_backend.host_view(values), dtype=np.float64)
            except (AttributeError, TypeError):  # another framework's tensor
                x = np.asarray(keras.ops.convert_to_numpy(values), dtype=np.float64)
            self._x += float(np.sum(x))
            self._x2 += float(np.sum(x * x))
            self._n += float(x.size)
        self._stacked = []
        if not self._values:
            return
        x = _to_float64(self._values)
        w = _to_float64(self._weights)
        self._values, self._weights = [], []
        wx = w * x
        self._x += float(np.sum(wx))
        self._x2 += float(np.sum(wx * x))
        self._n += float(np.sum(w))

    def compute_mean(self) -> float:
        """Returns the weighted mean of the values added so far.

        Raises:
            ZeroDivisionError: if nothing (or only zero weight) was added.
        """
        self._fold()
        return self._x / self._nonzero_n()

    def make_statistics(self) -> tuple[float, float]:
        """Returns the weighted mean and standard deviation.

        The standard deviation is `sqrt(E[x**2] - mean**2)`, with a variance
        that rounding makes negative clipped to 0.

        Raises:
            ZeroDivisionError: if nothing (or only zero weight) was added.
        """
        self._fold()
        n = self._nonzero_n()
        mean = self._x / n
        var = self._x2 / n - mean * mean
        return mean, float(np.sqrt(max(var, 0.0)))

    def _nonzero_n(self) -> float:
        if self._n == 0:
            raise ZeroDivisionError(
                "Summary needs a nonzero total weight to compute statistics. "
                "Received: no values, or only zero weights, were added"
            )
        return self._n

    def serialize(self, serializer) -> None:
        """Saves or loads the sums `_x`, `_x2` and the total weight `_n`."""
        self._fold()
        x = serializer("_x", self._x)
        x2 = serializer("_x2", self._x2)
        n = serializer("_n", self._n)
        # Assigned together, so a missing key leaves the sums as they were.
        self._x, self._x2, self._n = float(x), float(x2), float(n)


def _as_str(value: Any) -> str:
    """A stored string, whether it comes back as `str`, bytes or an array."""
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


class DictSummary:
    """Running weighted means and standard deviations of dicts of scalars.

    Each key gets its own `Summary`. `add` takes the scalar entries of a
    dict (numbers, and arrays, tensors or variables of shape ()) and skips
    everything else, so a whole observation can be passed as it is. A
    `(value, weight)` tuple adds `value` with that weight.

    Like `Summary`, adding never waits for the device; results are Python
    floats.
    """

    def __init__(self) -> None:
        self._summaries: dict[str, Summary] = collections.defaultdict(Summary)

    def add(self, d: Mapping[str, Any]) -> None:
        """Adds the scalar entries of `d`.

        Args:
            d: values by key. A `(value, weight)` tuple adds `value` with
                `weight`; entries that are not scalars are skipped.

        Raises:
            ValueError: if the weight in a `(value, weight)` tuple is not a
                scalar.
        """
        summaries = self._summaries
        for key, value in d.items():
            weight = 1
            if isinstance(value, tuple) and len(value) == 2:
                value, weight = value
                if not _is_scalar(weight):
                    raise ValueError(
                        f"the weight of {key!r} must be a scalar. "
                        f"Received: weight={weight!r}"
                    )
            if _is_scalar(value):  # checked once, here, on the hot path
                summaries[key]._add_checked(value, weight)

    def add_stacked(self, d: Mapping[str, Any]) -> None:
        """Adds a fused run's values: each entry holds one value per iteration.

        Args:
            d: arrays or tensors of shape `(k,)` by key (entries of other
                shapes are skipped), such as `trainer.fused_observation`.
        """
        summaries = self._summaries
        for key, values in d.items():
            shape = getattr(values, "shape", None)
            if shape is not None and len(shape) == 1:
                summaries[key].add_stacked(values)

    def compute_mean(self) -> dict[str, float]:
        """Returns the mean of every key, as a new dict."""
        return {key: s.compute_mean() for key, s in self._summaries.items()}

    def make_statistics(self) -> dict[str, float]:
        """Returns the mean as `key` and the standard deviation as `key.std`."""
        stats = {}
        for key, summary in self._summaries.items():
            stats[key], stats[key + ".std"] = summary.make_statistics()
        return stats

    def serialize(self, serializer) -> None:
        """Saves or loads every key's `Summary`.

        Keys may contain `/`, a group separator in HDF5, so the key list is
        stored as one JSON string `_names`, and the summaries as children
        `_summaries/0`, `_summaries/1`, ... in that order (Chainer's
        layout). Loading replaces all keys with the stored ones.
        """
        if not isinstance(serializer, Deserializer):
            names = list(self._summaries)
            serializer("_names", json.dumps(names))
            for index, name in enumerate(names):
                self._summaries[name].serialize(serializer["_summaries"][str(index)])
            return
        stored = serializer("_names", None)
        if stored is None:
            # The checking pass of a load hands back the value it is given,
            # so the stored key list (and the children it names) is unknown
            # here; checking the current keys' children instead would reject
            # snapshots with fewer keys. The real pass reads everything.
            return
        summaries: dict[str, Summary] = collections.defaultdict(Summary)
        for index, name in enumerate(json.loads(_as_str(stored))):
            summaries[name].serialize(serializer["_summaries"][str(index)])
        self._summaries = summaries
