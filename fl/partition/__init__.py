"""Split a training log into federated clients, reproducibly by seed.

A :class:`Partition` (:mod:`fl.partition.table`) says which part of an
:class:`~ranking.data.interactions.Interactions` log each client owns; the schemes that build one
(:func:`make_partition` and the functions it dispatches to) are in :mod:`fl.partition.schemes`.
The public names are re-exported here.
"""

from fl.partition.schemes import (
    PARTITION_KINDS,
    by_time,
    dirichlet,
    dominant_categories,
    make_partition,
    one_user_per_client,
    users_per_client,
)
from fl.partition.table import Partition

__all__ = [
    "PARTITION_KINDS",
    "Partition",
    "by_time",
    "dirichlet",
    "dominant_categories",
    "make_partition",
    "one_user_per_client",
    "users_per_client",
]
