"""TensorFlow: devices, `TF_CONFIG` processes and `tf.distribute` steps."""

from __future__ import annotations

import json
import os

import tensorflow as tf


def device_names(kind: str) -> list[str]:
    # Logical devices: what `tf.device` places on, including logical CPUs
    # made with `tf.config.set_logical_device_configuration`.
    return [
        device.name.rsplit("device:", 1)[-1].lower()
        for device in tf.config.list_logical_devices(kind.upper())
    ]


def device_exists(kind: str, index: int) -> bool:
    if kind == "cpu" and index == 0:
        return True  # skip initializing the runtime for the common case
    return f"{kind}:{index}" in device_names(kind)


def _cluster() -> tuple[list[tuple[str, int]], tuple[str, int] | None]:
    """The (task type, index) of every worker in `TF_CONFIG`, and this task's."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = config.get("cluster") or {}
    workers = [
        (kind, i)
        for kind in ("chief", "worker")
        for i in range(len(cluster.get(kind) or ()))
    ]
    task = config.get("task") or {}
    if not workers or task.get("type") not in ("chief", "worker"):
        return workers, None
    return workers, (task["type"], int(task.get("index", 0)))


def process_rank() -> int:
    workers, task = _cluster()
    return 0 if task is None else workers.index(task)


def process_count() -> int:
    workers, task = _cluster()
    return 1 if task is None else len(workers)


def is_chief_process() -> bool:
    # As `MultiWorkerMirroredStrategy` decides: the chief task if the
    # cluster has one, else worker 0.
    return process_rank() == 0
