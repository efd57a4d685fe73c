"""Exclusion lists of a search: reading them, dropping excluded ids, over-fetching to fill ``k``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np

from ranking.errors import DataError

__all__ = ["ExcludeArg", "compact", "parse_exclude", "search_overfetch"]

ExcludeArg = Sequence[np.ndarray] | np.ndarray | None


def parse_exclude(exclude: ExcludeArg, n_queries: int) -> np.ndarray | list[np.ndarray] | None:
    """``None``, one sorted global id array, or one sorted id array per query."""

    def clean(arr: Any, what: str) -> np.ndarray:
        a = np.asarray(arr)
        if a.size == 0:
            return np.empty(0, np.int64)
        if not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{what} must hold integer item ids, got dtype {a.dtype}")
        a = a.reshape(-1).astype(np.int64, copy=False)
        return np.unique(a[a >= 0])

    if exclude is None:
        return None
    if not isinstance(exclude, np.ndarray) and isinstance(exclude, Sequence) and not exclude:
        return None
    if isinstance(exclude, np.ndarray):
        if exclude.ndim <= 1:
            excl = clean(exclude, "exclude")
            return excl if excl.size else None
        if exclude.ndim == 2:
            if exclude.shape[0] != n_queries:
                raise DataError(f"exclude has {exclude.shape[0]} rows for {n_queries} queries")
            rows = [clean(r, f"exclude[{i}]") for i, r in enumerate(exclude)]
            return rows if any(r.size for r in rows) else None
        raise DataError(f"exclude must be a 1-D or 2-D array, got shape {exclude.shape}")
    if isinstance(exclude, str | bytes) or not isinstance(exclude, Sequence):
        raise DataError(
            f"exclude must be an array or a sequence of per-query arrays, got {type(exclude).__name__}"
        )
    if len(exclude) and all(np.ndim(e) == 0 for e in exclude):
        excl = clean(np.asarray(exclude), "exclude")  # a plain list of ids: one global set
        return excl if excl.size else None
    if len(exclude) != n_queries:
        raise DataError(f"exclude has {len(exclude)} per-query lists for {n_queries} queries")
    rows = [clean(e, f"exclude[{i}]") for i, e in enumerate(exclude)]
    return rows if any(r.size for r in rows) else None


def compact(
    scores: np.ndarray, ids: np.ndarray, drop: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first ``k`` entries of each row not marked in ``drop`` (in order), pad with -1/-inf."""
    drop = drop | (ids < 0)
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]
    ids = np.take_along_axis(ids, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    gone = np.take_along_axis(drop, order, axis=1)
    ids[gone] = -1
    scores[gone] = -np.inf
    if ids.shape[1] < k:
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return scores, ids


def search_overfetch(
    index: faiss.Index,
    known: np.ndarray,
    q: np.ndarray,
    k: int,
    excl: np.ndarray | list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Search for ``k`` plus as many extra results as are excluded, then drop the excluded.

    ``known`` holds the sorted ids stored in ``index``; ``excl`` one sorted exclusion array for
    every query or one per query (as :func:`parse_exclude` returns them).
    """
    per_query = isinstance(excl, list)
    # Only excluded ids that are in the index can take a slot: fetch that many extra.
    if per_query:
        longest = max((int(np.isin(e, known, assume_unique=True).sum()) for e in excl), default=0)
    else:
        longest = int(np.isin(excl, known, assume_unique=True).sum())
    ntotal = index.ntotal
    fetch = min(k + longest, ntotal)
    out_s = np.full((len(q), k), -np.inf, np.float32)
    out_i = np.full((len(q), k), -1, np.int64)
    todo = np.arange(len(q))
    while todo.size:
        scores, ids = index.search(q[todo], fetch)
        if per_query:
            drop = np.stack([np.isin(ids[j], excl[row]) for j, row in enumerate(todo)])
        else:
            drop = np.isin(ids, excl)
        s, i = compact(scores, ids, drop, k)
        out_s[todo], out_i[todo] = s, i
        # Rows still short although the index returned a full list may hold more allowed items
        # further down (approximate indexes can return fewer than asked); fetch deeper.
        short = (i < 0).any(axis=1) & (ids >= 0).all(axis=1)
        if fetch >= ntotal:
            break
        todo = todo[short]
        fetch = min(fetch * 2, ntotal)
    return out_s, out_i
