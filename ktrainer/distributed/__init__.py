"""Processes of a distributed run (`chainermn`'s helpers, for Keras engines).

ktrainer runs on each backend's own distribution engine, set up the way a
Keras user sets it up (a `tf.distribute` strategy, a `keras.distribution`,
an initialized `torch.distributed` group). These helpers answer, the same
way on every engine, which process this is and give each process its
share of a dataset.
"""

from ktrainer.distributed._process import is_chief, rank, world_size
from ktrainer.distributed._scatter import scatter_dataset

__all__ = [
    "is_chief",
    "rank",
    "scatter_dataset",
    "world_size",
]
