"""PyTorch: devices, `torch.distributed` processes and DDP-style steps."""

from __future__ import annotations

import numpy
import torch
import torch.distributed as dist

from ktrainer._backend._common import require_built
from ktrainer._backend._distribute_common import (
    delegate,
    metrics_result,
    warn_unsynchronized_batch_norm,
)


def device_names(kind: str) -> list[str]:
    if kind == "cpu":
        return ["cpu:0"]
    if kind == "gpu":
        return [f"gpu:{i}" for i in range(torch.cuda.device_count())]
    return []


def device_exists(kind: str, index: int) -> bool:
    return f"{kind}:{index}" in device_names(kind)


def _group_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def process_rank() -> int:
    return dist.get_rank() if _group_active() else 0


def process_count() -> int:
    return dist.get_world_size() if _group_active() else 1


def is_chief_process() -> bool:
    return process_rank() == 0


# -- data-parallel steps -------------------------------------------------------


def _distributed() -> bool:
    return _group_active() and dist.get_world_size() > 1


def train_step_class(model, optimizer):
    """`DDPTrainStep` in an initialized process group of 2+ ranks, else `None`."""
    if not _distributed():
        return None
    warn_unsynchronized_batch_norm(model, "torch.distributed")
    return DDPTrainStep


def minimizer_class(model, optimizer):
    """`DDPMinimizer` in an initialized process group of 2+ ranks, else `None`."""
    if not _distributed():
        return None
    warn_unsynchronized_batch_norm(model, "torch.distributed")
    return DDPMinimizer


def _collective_device():
    # gloo reduces host tensors; nccl needs them on the GPU.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_variables(variables, src: int = 0) -> None:
    """Gives every rank rank `src`'s values of `variables`, in one broadcast."""
    values = [v.value for v in variables]
    if not values:
        return
    device = _collective_device()
    with torch.no_grad():
        flat = torch.cat(
            [t.detach().reshape(-1).to(device, torch.float64) for t in values]
        )
        dist.broadcast(flat, src=src)
        offset = 0
        for tensor in values:
            n = tensor.numel()
            piece = flat[offset : offset + n].reshape(tensor.shape)
            tensor.copy_(piece.to(tensor.device, tensor.dtype))
            offset += n


class _GradientAverager:
    """Averages gradients over the process group while it is active.

    A hook on each trainable tensor replaces its gradient, when autograd
    computes it, by the mean over ranks (DDP's semantics), so the
    single-device step (`backward()` + `optimizer.apply`, or
    `torch.autograd.grad`) applies the averaged gradient. Inactive
    outside the step, so other code differentiating the model is not
    drawn into collectives.
    """

    def __init__(self, variables) -> None:
        self.active = False
        self._world = dist.get_world_size()
        for variable in variables:
            tensor = variable.value
            if tensor.requires_grad:
                tensor.register_hook(self._average)

    def _average(self, grad):
        if not self.active:
            return grad
        reduced = grad.detach().clone()
        dist.all_reduce(reduced)
        return reduced / self._world


class _DDPStep:
    """Shared by the DDP steps: weights from rank 0, averaged gradients."""

    def __init__(self, model, inner) -> None:
        self.model = model
        self._inner = inner
        self._averager = None

    def _prepare(self, data) -> None:
        if self._averager is not None:
            return
        if not self.model.built:
            require_built(self.model, data)
        # Every rank starts from rank 0's weights, as DDP does.
        broadcast_variables(self.model.variables)
        self._averager = _GradientAverager(self.model.trainable_variables)

    def _run(self, *args):
        self._averager.active = True
        try:
            return self._inner(*args)
        finally:
            self._averager.active = False

    def __getattr__(self, name):
        # Everything else (sync) is the single-device step's.
        return delegate(self, name)


class DDPTrainStep(_DDPStep):
    """The compiled model's step with DDP semantics over the process group.

    Each rank steps on its own batch (its share of the global batch, see
    `scatter_dataset`); gradients are averaged over ranks before the
    optimizer applies them, so all ranks keep the same weights, those a
    single device gets on the global batch. The logs are the rank's own;
    the Reporter averages reported values over ranks.
    """

    def __init__(self, model, optimizer, loss_fn=None) -> None:
        from ktrainer import _backend

        extra = () if loss_fn is None else (loss_fn,)
        super().__init__(model, _backend.TrainStep(model, optimizer, *extra))

    def __call__(self, data):
        self._prepare(data)
        return self._run(data)


class DDPMinimizer(_DDPStep):
    """`minimize` with DDP semantics over the process group (see above)."""

    def __init__(self, model, optimizer, others, loss_fn) -> None:
        from ktrainer import _backend

        super().__init__(model, _backend.Minimizer(model, optimizer, others, loss_fn))

    def __call__(self, args, kwargs):
        self._prepare(None)
        return self._run(args, kwargs)


def prepare_optimizer(model, optimizer) -> None:
    """Builds `optimizer` for a built `model` (its slots exist before a load)."""
    if model.built and not optimizer.built:
        optimizer.build(model.trainable_variables)


# -- evaluation ----------------------------------------------------------------


def test_step_class(model):
    """`ProcessTestStep` in an initialized process group of 2+ ranks, else `None`."""
    if not _distributed():
        return None
    return ProcessTestStep


class ProcessTestStep:
    """The single-device `test_step` on this rank's batches.

    The metrics accumulate over this rank's examples only (no collective
    in the step, so ranks may evaluate different numbers of examples);
    `metric_values()` gives their states, which the Evaluator sums over
    ranks in one all-reduce.
    """

    def __init__(self, model) -> None:
        from ktrainer import _backend

        self.model = model
        self._inner = _backend.TestStep(model)

    def reset(self) -> None:
        self._inner.reset()

    def __call__(self, data) -> None:
        self._inner(data)

    def metric_values(self) -> list:
        """This rank's metric states, as numpy arrays."""
        return [
            v.value.detach().cpu().numpy().copy() for v in self.model.metrics_variables
        ]

    def result(self) -> dict:
        return metrics_result(self.model, self.metric_values())


def sum_over_processes(vector: numpy.ndarray, models=()) -> numpy.ndarray:
    """The element-wise sum of a float64 vector over ranks, in one all-reduce."""
    del models
    vector = numpy.ascontiguousarray(vector, dtype=numpy.float64)
    if not _distributed():
        return vector
    tensor = torch.from_numpy(vector.copy()).to(_collective_device())
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def reduces_reports() -> bool:
    """Whether reported values must be averaged over processes."""
    return _distributed()


def mean_over_processes(values: dict) -> dict:
    """The mean over ranks of each numeric value, in one all-reduce.

    Every rank must report the same keys at the same time. Values that
    are not numbers, arrays or tensors are left as they are.
    """
    keys, parts, shapes = [], [], []
    for key, value in values.items():
        if isinstance(value, (str, bytes)) or value is None:
            continue
        try:
            tensor = torch.as_tensor(
                value.detach().cpu() if isinstance(value, torch.Tensor) else value,
                dtype=torch.float64,
            )
        except (TypeError, ValueError, RuntimeError):
            continue
        keys.append(key)
        shapes.append(tensor.shape)
        parts.append(tensor.reshape(-1))
    if not keys:
        return dict(values)
    flat = torch.cat(parts).to(_collective_device())
    dist.all_reduce(flat)
    flat = (flat / dist.get_world_size()).cpu().numpy()
    out = dict(values)
    offset = 0
    for key, shape in zip(keys, shapes):
        n = int(numpy.prod(shape, dtype=numpy.int64))
        piece = flat[offset : offset + n]
        out[key] = piece.reshape(shape) if len(shape) else float(piece[0])
        offset += n
    return out
