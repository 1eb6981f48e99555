"""PyTorch: devices, `torch.distributed` processes and DDP-style steps."""

from __future__ import annotations

import torch
import torch.distributed as dist


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


def train_step_class(model, optimizer):
    """Not distributed yet on this backend: the single-device step."""
    return None


def minimizer_class(model, optimizer):
    """Not distributed yet on this backend: the single-device minimizer."""
    return None
