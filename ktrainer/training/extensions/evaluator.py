"""`Evaluator`: evaluates models on a validation set and reports the results."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from ktrainer import _backend
from ktrainer import reporter as reporter_module
from ktrainer.dataset.convert import DeviceSpec, concat_examples, parse_device
from ktrainer.dataset.data_source_iterator import one_pass_iterator
from ktrainer.training import extension
from ktrainer.training.extensions import _util


class Evaluator(extension.Extension):
    """Evaluates models on a validation iterator and reports the means.

    Each call makes a fresh `Reporter` in which every target is an observer
    named `'<name of this extension>/<target name>'` (so
    `'validation/main'`), runs `evaluate()` under it, reports the returned
    dict to the current reporter (the trainer's, whose observation then
    holds `'validation/main/loss'`, `'validation/main/<metric>'`) and
    returns it.

    By default `evaluate()` runs `model.evaluate`'s computation: every
    target that is a compiled `keras.Model` goes through its compiled loss
    and metrics over all batches of the `'main'` iterator (the converted
    batch is `(x, y)` or `(x, y, sample_weight)`), and the results are
    exactly those of `model.evaluate(..., return_dict=True)` on the same
    batches, a smaller last batch included. Other targets are observers
    only. With `eval_func`, `evaluate()` instead calls
    `eval_func(*arrays)` (a dict batch as keywords, any other as one
    argument) for every batch; what it reports (e.g.
    `report({'loss': l}, model)`) is averaged over batches, each weighted
    by its number of examples.

    The validation data may also be what `model.evaluate` takes: a tuple
    `(x, y)` (or `(x,)`, `(x, y, sample_weight)`) of numpy arrays or a
    dataset (a `TupleDataset`, anything with `len` and indexing but a list
    or a tuple) is read in batches of 32, as `model.evaluate` does; a
    `keras.utils.PyDataset`, a `tf.data.Dataset` or a torch `DataLoader`
    batch by batch; an iterator from `ktrainer.dataset.as_iterator` (which
    repeats, for training) as one pass over its source. In each case the
    evaluator builds the non-repeating iterator itself, in order.

    The iterator is `reset()` before each evaluation (an iterator without
    `reset` is copied instead), so every evaluation sees the same data. An
    iterator you built must not repeat: one that does is refused, because
    evaluation would never end (Chainer's evaluator would loop forever).

    Called without a trainer (`evaluator()`), it works the same way; as
    in Chainer, the keys then have no extension-name prefix unless the
    extension was registered with a trainer, which gives it its name.

    Default trigger `(1, 'epoch')`, priority `PRIORITY_WRITER` (it runs
    before readers such as `LogReport` in the same iteration), default
    name `'validation'`.

    Args:
        iterator: the validation data: a non-repeating iterator, arrays,
            a dataset or a Keras data source (see above), or a dict of
            them with a `'main'` one.
        target: a compiled `keras.Model`, or a dict of names to models
            (a single model is named `'main'`).
        converter: turns a batch (a list of examples) into arrays.
            Defaults to `concat_examples`.
        device: where to run: `None`, `-1` or `'cpu'` for the host; `0`,
            `'gpu'` or `'gpu:N'` for an accelerator. Passed to `converter`
            too. Defaults to `None` (Keras's default placement).
        eval_hook: called with this extension before each evaluation.
            Defaults to `None`.
        eval_func: called with each converted batch instead of the
            compiled evaluation (see above). Defaults to `None`.

    Attributes:
        converter: the converter.
        device: the device spec.
        eval_hook: the hook called before each evaluation.
        eval_func: the custom evaluation function, or `None`.
    """

    trigger = (1, "epoch")
    priority = extension.PRIORITY_WRITER
    default_name = "validation"
    name = None

    def __init__(
        self,
        iterator: Any,
        target: keras.Model | dict[str, Any],
        converter: Callable = concat_examples,
        device: DeviceSpec = None,
        eval_hook: Callable[[Evaluator], Any] | None = None,
        eval_func: Callable | None = None,
    ) -> None:
        iterators = dict(iterator) if isinstance(iterator, dict) else {"main": iterator}
        iterators = {name: one_pass_iterator(it) for name, it in iterators.items()}
        if "main" not in iterators:
            raise ValueError(
                "iterator must contain a 'main' iterator. "
                f"Received: iterator keys={sorted(iterators)}"
            )
        for name, it in iterators.items():
            _check_iterator(name, it)
        targets = dict(target) if isinstance(target, dict) else {"main": target}
        for name, value in (
            ("converter", converter),
            ("eval_hook", eval_hook),
            ("eval_func", eval_func),
        ):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable. Received: {name}={value!r}")
        if converter is None:
            raise TypeError("converter must be callable. Received: converter=None")
        if eval_func is None:
            _check_targets(targets)
        self._iterators = iterators
        self._targets = targets
        self._device_name = parse_device(device)
        self.converter = converter
        self.device = device
        self.eval_hook = eval_hook
        self.eval_func = eval_func
        self._test_steps: dict[str, Any] = {}

    def get_iterator(self, name: str = "main"):
        """Returns the iterator registered under `name`."""
        return self._iterators[name]

    def get_all_iterators(self) -> dict[str, Any]:
        """Returns a dict of all iterators."""
        return dict(self._iterators)

    def get_target(self, name: str = "main"):
        """Returns the target registered under `name`."""
        return self._targets[name]

    def get_all_targets(self) -> dict[str, Any]:
        """Returns a dict of all targets."""
        return dict(self._targets)

    def __call__(self, trainer=None) -> dict[str, float]:
        """Evaluates, reports the results to the current reporter and returns them.

        Args:
            trainer: the trainer; unused, so the extension can also be
                called by hand. Defaults to `None`.

        Returns:
            The results by key, as Python floats.
        """
        reporter = reporter_module.Reporter()
        prefix = "" if self.name is None else self.name + "/"
        for name, target in self._targets.items():
            reporter.add_observer(prefix + name, target)
            reporter.add_observers(prefix + name, _util.named_sublayers(target))
        with reporter:
            result = self.evaluate()
        reporter_module.report(result)
        return result

    def evaluate(self) -> dict[str, float]:
        """Runs one evaluation over the `'main'` iterator and returns the results.

        Reports go to the current reporter's observers (see `__call__`).
        Subclasses may override this to customise the evaluation loop.
        """
        if self.eval_hook is not None:
            self.eval_hook(self)
        batches = _fresh_iterator(self._iterators["main"])
        if self.eval_func is None:
            return self._evaluate_models(batches)
        return self._evaluate_func(batches)

    def _evaluate_models(self, batches) -> dict[str, float]:
        steps = self._get_test_steps()
        for step in steps.values():
            step.reset()
        with _backend.device_scope(self._device_name):
            for batch in batches:
                in_arrays = self.converter(batch, self.device)
                data = tuple(in_arrays) if isinstance(in_arrays, list) else in_arrays
                for step in steps.values():
                    step(data)
        observation: dict[str, Any] = {}
        with reporter_module.report_scope(observation):
            for name, step in steps.items():
                reporter_module.report(step.result(), self._targets[name])
        return {key: _to_float(value) for key, value in observation.items()}

    def _evaluate_func(self, batches) -> dict[str, float]:
        summary = reporter_module.DictSummary()
        eval_func = self.eval_func
        for batch in batches:
            observation: dict[str, Any] = {}
            with reporter_module.report_scope(observation):
                in_arrays = self.converter(batch, self.device)
                with _backend.device_scope(self._device_name):
                    if isinstance(in_arrays, (tuple, list)):
                        eval_func(*in_arrays)
                    elif isinstance(in_arrays, dict):
                        eval_func(**in_arrays)
                    else:
                        eval_func(in_arrays)
            size = len(batch) if hasattr(batch, "__len__") else 1
            summary.add(
                {
                    key: value if isinstance(value, tuple) else (value, size)
                    for key, value in observation.items()
                }
            )
        return summary.compute_mean()

    def _get_test_steps(self) -> dict[str, Any]:
        if not self._test_steps:
            self._test_steps = {
                name: _backend.TestStep(target)
                for name, target in self._targets.items()
                if _is_compiled_model(target)
            }
        return self._test_steps

    def finalize(self) -> None:
        """Finalizes the iterators (releases their threads, if any)."""
        for iterator in self._iterators.values():
            finalize = getattr(iterator, "finalize", None)
            if finalize is not None:
                finalize()


def _is_compiled_model(target: Any) -> bool:
    return isinstance(target, keras.Model) and bool(getattr(target, "compiled", False))


def _check_targets(targets: dict[str, Any]) -> None:
    for name, target in targets.items():
        if isinstance(target, keras.Model) and not _is_compiled_model(target):
            raise ValueError(
                "target must be a compiled keras.Model (call model.compile(loss=..., "
                "metrics=...) first) unless eval_func is given. "
                f"Received: target[{name!r}]={target.name!r}, not compiled"
            )
    if not any(_is_compiled_model(t) for t in targets.values()):
        raise TypeError(
            "target must be a compiled keras.Model or a dict holding at least one "
            "unless eval_func is given. "
            f"Received: target={targets if len(targets) > 1 else targets['main']!r}"
        )


def _check_iterator(name: str, iterator: Any) -> None:
    if not hasattr(iterator, "__iter__") and not hasattr(iterator, "__next__"):
        raise TypeError(
            "iterator must be a ktrainer iterator (e.g. SerialIterator with "
            "repeat=False), a tuple of numpy arrays, a dataset, a Keras data "
            f"source or a dict of them. Received: iterator[{name!r}]="
            f"{iterator!r}"
        )
    if getattr(iterator, "repeat", False):
        raise ValueError(
            "iterator must not repeat, or evaluation never ends; create it with "
            f"repeat=False. Received: iterator[{name!r}] with repeat=True"
        )


def _fresh_iterator(iterator: Any):
    """The iterator rewound to its start (reset, or a copy if it cannot be)."""
    reset = getattr(iterator, "reset", None)
    if reset is not None:
        reset()
        return iterator
    return copy.copy(iterator)


def _to_float(value: Any) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value)))
