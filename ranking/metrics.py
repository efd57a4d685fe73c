"""Ranking metrics as pure functions.

Accuracy metrics take the **0-based rank** of each evaluation target (``0`` = the target was the
top recommendation); a rank ``>= k`` is a miss at cut-off ``k``. Every accuracy metric is the mean
over targets.

Beyond-accuracy metrics take the top-K lists ``topk`` (``int [U, K]``, one row per list, best item
first). Entries equal to ``-1`` mark empty slots (for instance when fewer than ``K`` items could be
recommended) and are ignored.

Every function returns ``nan`` for empty input rather than raising, so that a caller can decide how
to report "nothing to evaluate".
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "average_popularity",
    "coverage",
    "hit_rate",
    "mrr",
    "ndcg",
    "novelty",
]


def _ranks(ranks: np.ndarray, k: int) -> np.ndarray:
    if int(k) != k or k < 1:
        raise ValueError(f"cut-off k must be a positive integer, got {k!r}")
    r = np.asarray(ranks)
    if r.ndim != 1:
        raise ValueError(f"ranks must be a 1-D array, got shape {r.shape}")
    if r.size and (r.min() < 0):
        raise ValueError("ranks are 0-based and must be >= 0")
    return r


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """Fraction of targets ranked in the top ``k`` (``rank < k``)."""
    r = _ranks(ranks, k)
    if r.size == 0:
        return float("nan")
    return float(np.mean(r < k))


def ndcg(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k with one relevant item per target: ``1 / log2(rank + 2)`` if ``rank < k`` else 0."""
    r = _ranks(ranks, k)
    if r.size == 0:
        return float("nan")
    gain = np.where(r < k, 1.0 / np.log2(r.astype(np.float64) + 2.0), 0.0)
    return float(gain.mean())


def mrr(ranks: np.ndarray, k: int) -> float:
    """Mean reciprocal rank truncated at ``k``: ``1 / (rank + 1)`` if ``rank < k`` else 0."""
    r = _ranks(ranks, k)
    if r.size == 0:
        return float("nan")
    rr = np.where(r < k, 1.0 / (r.astype(np.float64) + 1.0), 0.0)
    return float(rr.mean())


def _valid_entries(topk: np.ndarray, n_items: int) -> np.ndarray:
    lists = np.asarray(topk)
    if lists.ndim != 2:
        raise ValueError(f"topk must be a 2-D array [U, K], got shape {lists.shape}")
    flat = lists.reshape(-1)
    flat = flat[flat >= 0]
    if flat.size and flat.max() >= n_items:
        raise ValueError(f"recommended item {int(flat.max())} outside the catalog 0..{n_items - 1}")
    return flat.astype(np.int64, copy=False)


def coverage(topk: np.ndarray, n_items: int) -> float:
    """Catalog coverage: fraction of the ``n_items`` items that appear in at least one list."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    flat = _valid_entries(topk, n_items)
    if np.asarray(topk).shape[0] == 0:
        return float("nan")
    return float(np.count_nonzero(np.bincount(flat, minlength=n_items)) / n_items)


def novelty(topk: np.ndarray, item_popularity: np.ndarray, *, smoothing: float = 1.0) -> float:
    """Mean self-information ``-log2 p(i)`` of the recommended items, in bits.

    ``item_popularity`` holds the interaction count of every item (length ``n_items``). The
    probability of an item is Laplace-smoothed, ``p(i) = (count_i + s) / (n_interactions + s *
    n_items)`` with ``s = smoothing``, so that items never seen in training get a finite value.
    ``smoothing=0`` gives the plain ``count_i / n_interactions`` (an item with zero count then has
    infinite novelty). The mean is over every non-empty slot of every list.
    """
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    counts = np.asarray(item_popularity, dtype=np.float64)
    if counts.ndim != 1 or (counts.size and counts.min() < 0):
        raise ValueError("item_popularity must be a 1-D array of non-negative counts")
    flat = _valid_entries(topk, len(counts))
    if flat.size == 0:
        return float("nan")
    total = counts.sum() + smoothing * len(counts)
    if total <= 0:
        raise ValueError("item_popularity sums to zero and smoothing is 0: probabilities undefined")
    with np.errstate(divide="ignore"):
        info = -np.log2((counts[flat] + smoothing) / total)
    return float(info.mean())


def average_popularity(topk: np.ndarray, item_counts: np.ndarray) -> float:
    """Mean interaction count of the recommended items (over every non-empty slot of every list)."""
    counts = np.asarray(item_counts, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError("item_counts must be a 1-D array")
    flat = _valid_entries(topk, len(counts))
    if flat.size == 0:
        return float("nan")
    return float(counts[flat].mean())
