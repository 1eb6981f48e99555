"""JAX: devices, `jax.distributed` processes and sharded steps."""

from __future__ import annotations

import jax


def device_names(kind: str) -> list[str]:
    try:
        devices = jax.devices(kind)
    except RuntimeError:  # no such platform on this machine
        return []
    return [f"{kind}:{device.id}" for device in devices]


def device_exists(kind: str, index: int) -> bool:
    # Keras's jax `device_scope` looks devices up by platform and id.
    return f"{kind}:{index}" in device_names(kind)


def process_rank() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def is_chief_process() -> bool:
    return jax.process_index() == 0


def train_step_class(model, optimizer):
    """Not distributed yet on this backend: the single-device step."""
    return None
