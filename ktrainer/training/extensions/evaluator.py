"""`Evaluator`: evaluates models on a validation set and reports the results."""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from ktrainer import _backend
from ktrainer import reporter as reporter_module
from ktrainer._backend import distribute
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

    **In a distributed run** the results are those of one device over the
    whole validation set, the same in every process. Replicas in one
    process (a `tf.distribute.MirroredStrategy`, a jax
    `keras.distribution`) split each batch among them, as the train step
    does; a batch smaller than the others is split too (under jax, its
    remainder past a multiple of the number of devices runs replicated).
    With several processes each evaluates a part of the set, and the
    metric states (or, with `eval_func`, the sums of the reported values
    and their weights) are summed over processes in one collective per
    evaluation, so the reported values are the exact example-weighted
    global means (Keras's metrics are sums over examples: the split does
    not change them). Which part a process evaluates:

    - `scattered=None` (the default): a set made by
      `ktrainer.distributed.scatter_dataset` is this process's part (the
      examples it shares with the next process's share, which
      `scatter_dataset` adds to make the shares equal, are counted once);
      any other set is taken to be the whole set, given to every process,
      and process `r` of `n` evaluates its examples
      `[len*r//n, len*(r+1)//n)`, in batches of the iterator's batch
      size. Splitting needs an index-based source (arrays, a dataset, a
      `SerialIterator` or `MultithreadIterator`).
    - `scattered=True`: every process was given its own part (of any
      size, made any way, any kind of source): each evaluates what it
      has, and every example counts once.
    - `scattered=False`: the whole set in every process, split as above,
      even if it was made by `scatter_dataset`.

    Every process must run the evaluation at the same iteration (the
    trainer's triggers see to it), and an `eval_func` must report the
    same keys in every process.

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
        scattered: in a run of several processes, whether each process
            was given its own part of the validation set (`True`), the
            whole set (`False`), or `None` to tell by whether the set
            was made by `scatter_dataset` (see above). Unused in one
            process. Defaults to `None`.

    Attributes:
        converter: the converter.
        device: the device spec.
        eval_hook: the hook called before each evaluation.
        eval_func: the custom evaluation function, or `None`.
        scattered: see above.
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
        scattered: bool | None = None,
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
        if scattered is not None and not isinstance(scattered, bool):
            raise TypeError(
                "scattered must be None, True or False. "
                f"Received: scattered={scattered!r}"
            )
        self._iterators = iterators
        self._targets = targets
        self._device_name = parse_device(device)
        self.converter = converter
        self.device = device
        self.eval_hook = eval_hook
        self.eval_func = eval_func
        self.scattered = scattered
        self._test_steps: dict[str, Any] = {}
        self._local: tuple[Any, Any] | None = None
        if distribute.process_count() > 1:
            self._local_iterator()  # a set it cannot split fails here

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
        # The results are already global: no collective per report (torch).
        with distribute.local_reports():
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
        batches = _fresh_iterator(self._local_iterator())
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
        results = {name: step.result for name, step in steps.items()}
        distributed = {
            name: step for name, step in steps.items() if hasattr(step, "metric_values")
        }
        if distributed:
            # Metric states of this process's examples, summed over the
            # processes in one collective; the results follow from them.
            states = self._sum_over_processes(
                {name: step.metric_values() for name, step in distributed.items()}
            )
            for name in distributed:
                target = self._targets[name]
                results[name] = lambda t=target, v=states[name]: (
                    distribute.metrics_result(t, v)
                )
        observation: dict[str, Any] = {}
        with reporter_module.report_scope(observation):
            for name, result in results.items():
                reporter_module.report(result(), self._targets[name])
        return {key: _to_float(value) for key, value in observation.items()}

    def _sum_over_processes(self, states: dict[str, list]) -> dict[str, list]:
        """Each array summed over the processes, in one collective."""
        if distribute.process_count() == 1:
            return states
        arrays = [np.asarray(a) for values in states.values() for a in values]
        flat = np.concatenate(
            [a.reshape(-1).astype(np.float64) for a in arrays] or [np.zeros(0)]
        )
        total = distribute.sum_over_processes(flat, self._models())
        out: dict[str, list] = {}
        offset = 0
        for name, values in states.items():
            out[name] = []
            for a in values:
                a = np.asarray(a)
                piece = total[offset : offset + a.size].reshape(a.shape)
                out[name].append(piece.astype(a.dtype))
                offset += a.size
        return out

    def _models(self) -> list:
        return [t for t in self._targets.values() if isinstance(t, keras.Model)]

    def _local_iterator(self):
        """The iterator over the part of the set this process evaluates."""
        from ktrainer.distributed import _scatter
        from ktrainer.iterators import SerialIterator

        iterator = self._iterators["main"]
        size = distribute.process_count()
        if size == 1:
            return iterator
        if self._local is not None and self._local[0] is iterator:
            return self._local[1]
        dataset = getattr(iterator, "dataset", None)
        batch_size = getattr(iterator, "batch_size", None)
        scattered = self.scattered
        if scattered is None:
            scattered = dataset is not None and _scatter.share_of(dataset) is not None
        if scattered and (dataset is None or _scatter.share_of(dataset) is None):
            local = iterator  # the user's own part, evaluated as it is
        elif dataset is None or not isinstance(batch_size, int):
            raise ValueError(
                "iterator must read an indexable dataset (arrays, a dataset, a "
                "SerialIterator or MultithreadIterator) for the Evaluator to split "
                f"the validation set over the {size} processes; or give each "
                "process its own part and pass scattered=True. Received: "
                f"iterator['main'] of type {type(iterator).__name__}"
            )
        else:
            part = _scatter.evaluation_part(
                dataset, distribute.process_rank(), size, whole=not scattered
            )
            local = SerialIterator(part, batch_size, repeat=False, shuffle=False)
        self._local = (iterator, local)
        return local

    def _evaluate_func(self, batches) -> dict[str, float]:
        summary = self._summarize_func(batches)
        if distribute.process_count() == 1:
            return summary.compute_mean()
        # Weighted sums and weights of every key, summed over the processes
        # in one collective; a check value catches processes whose keys differ.
        keys = sorted(summary._summaries)
        sums, weights = [], []
        for key in keys:
            part = summary._summaries[key]
            part._fold()
            sums.append(part._x)
            weights.append(part._n)
        check = float(zlib.crc32("\0".join(keys).encode("utf-8")))
        vector = np.array([*sums, *weights, check, 1.0], dtype=np.float64)
        total = distribute.sum_over_processes(vector, self._models())
        processes = total[-1]
        if total[-2] != check * processes:
            raise ValueError(
                "eval_func must report the same keys in every process, or the "
                "results cannot be averaged over processes. Received: keys "
                f"{keys} in process {distribute.process_rank()}, others differ"
            )
        k = len(keys)
        return {
            key: float(total[i] / total[k + i]) if total[k + i] else float("nan")
            for i, key in enumerate(keys)
        }

    def _summarize_func(self, batches):
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
        return summary

    def _get_test_steps(self) -> dict[str, Any]:
        if not self._test_steps:
            self._test_steps = {
                name: distribute.make_test_step(target)
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
