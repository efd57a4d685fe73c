"""Interaction filters: minimum rating and k-core. Each returns a new :class:`Dataset`."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ranking.data.dataset import Dataset
from ranking.errors import ConfigError, DataError


def _restrict(dataset: Dataset, keep: np.ndarray, what: str, *, drop_items: bool) -> Dataset:
    """``dataset`` with only the ``keep`` rows; users left without interactions are dropped (and
    items too with ``drop_items``), and the remaining ones re-densified in their old order."""
    if not keep.any():
        raise DataError(
            f"{what} removed every interaction of dataset {dataset.name!r}; nothing is left"
        )
    inter = dataset.interactions.take(keep)
    users = np.unique(inter.user)
    user_map = np.full(inter.n_users, -1, dtype=np.int32)
    user_map[users] = np.arange(len(users), dtype=np.int32)
    catalog, item = dataset.catalog, inter.item
    if drop_items:
        items = np.unique(inter.item)
        item_map = np.full(inter.n_items, -1, dtype=np.int32)
        item_map[items] = np.arange(len(items), dtype=np.int32)
        catalog, item = catalog.take(items), item_map[inter.item]
    inter = replace(
        inter,
        user=user_map[inter.user],
        item=item,
        user_ids=inter.user_ids[users],
        n_items=catalog.n_items,
    )
    return Dataset(name=dataset.name, catalog=catalog, interactions=inter)


def min_rating(dataset: Dataset, threshold: float) -> Dataset:
    """Keep the interactions rated ``>= threshold``.

    Users left without interactions are dropped; the catalog is kept whole.
    """
    if dataset.interactions.rating is None:
        raise DataError(
            f"dataset {dataset.name!r} has no ratings; min_rating needs a rating column"
        )
    keep = dataset.interactions.rating >= threshold
    return _restrict(dataset, keep, f"min_rating(threshold={threshold})", drop_items=False)


def k_core(dataset: Dataset, user_k: int, item_k: int) -> Dataset:
    """The k-core: repeatedly drop users with fewer than ``user_k`` and items with fewer than
    ``item_k`` interactions until none is left to drop; users and items are re-densified."""
    for name, k in (("user_k", user_k), ("item_k", item_k)):
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise ConfigError(f"k_core: {name} must be a non-negative integer, got {k!r}")
    inter = dataset.interactions
    keep = np.ones(len(inter), dtype=bool)
    while True:
        user_count = np.bincount(inter.user[keep], minlength=inter.n_users)
        item_count = np.bincount(inter.item[keep], minlength=inter.n_items)
        still = keep & (user_count[inter.user] >= user_k) & (item_count[inter.item] >= item_k)
        if still.sum() == keep.sum():
            break
        keep = still
    return _restrict(dataset, keep, f"k_core(user_k={user_k}, item_k={item_k})", drop_items=True)
