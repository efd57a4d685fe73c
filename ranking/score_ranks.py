"""Ranks and top-K lists from score matrices, the building blocks of :mod:`ranking.evaluation`.

Ties are pessimistic in :func:`rank_targets` and broken by item id in :func:`topk_items`, so both
results are fully determined by the scores (see the protocol in :mod:`ranking.evaluation`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ranking.data.interactions import UserSequences

__all__ = [
    "check_scores",
    "gather_histories",
    "history_mask",
    "rank_targets",
    "topk_items",
    "topk_unchecked",
]


def check_scores(scores: np.ndarray) -> np.ndarray:
    """``scores`` as a float ``[B, n_items]`` array; a wrong shape or a NaN is a ValueError."""
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D array [B, n_items], got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float32)
    if np.isnan(s).any():
        rows = np.flatnonzero(np.isnan(s).any(axis=1))
        raise ValueError(f"scores contain NaN (first in batch row {int(rows[0])}); cannot rank")
    return s


def rank_targets(
    scores: np.ndarray, targets: np.ndarray, seen_mask: np.ndarray | None = None
) -> np.ndarray:
    """0-based full-catalog rank of each target: the number of other items scoring at least as high.

    Parameters
    ----------
    scores:
        ``[B, n_items]`` float scores, higher = better. Not modified.
    targets:
        ``[B]`` dense item ids.
    seen_mask:
        Optional ``[B, n_items]`` bool; ``True`` items are not candidates (they never count
        against the target). The target itself is always a candidate, even where the mask is
        ``True`` for it.

    Returns
    -------
    ``int64 [B]`` ranks (``0`` = best). Ties with the target count against it (pessimistic).
    """
    s = check_scores(scores)
    t = np.asarray(targets, dtype=np.int64)
    if t.shape != (s.shape[0],):
        raise ValueError(f"targets must have shape ({s.shape[0]},), got {t.shape}")
    rows = np.arange(s.shape[0])
    target_scores = s[rows, t]
    beats = s >= target_scores[:, None]
    beats[rows, t] = False  # the target does not count against itself
    if seen_mask is not None:
        mask = np.asarray(seen_mask, dtype=bool)
        if mask.shape != s.shape:
            raise ValueError(f"seen_mask must have shape {s.shape}, got {mask.shape}")
        beats &= ~mask
    return beats.sum(axis=1, dtype=np.int64)


def topk_items(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best items per row, best first: ``int64 [B, min(k, n_items)]``.

    Items are ordered by score, descending, and equal scores by item id, ascending -- also at the
    cut-off, so the lists are fully determined by the scores. Slots whose score is ``-inf`` (masked
    items) are returned as ``-1``.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return topk_unchecked(check_scores(scores), int(k))


def topk_unchecked(s: np.ndarray, k: int) -> np.ndarray:
    """:func:`topk_items` of scores already passed through :func:`check_scores`, for k >= 1."""
    n_rows, n_items = s.shape
    k_eff = min(k, n_items)
    # The k-th largest score of each row; every larger item is in the list and the remaining
    # slots go to the lowest ids among the items equal to it.
    cut = n_items - k_eff
    kth = np.partition(s, cut, axis=1)[:, cut : cut + 1]
    above = s > kth
    tied = s == kth
    slots = k_eff - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= slots))
    items = np.nonzero(chosen)[1].reshape(n_rows, k_eff)  # ascending ids within each row
    vals = np.take_along_axis(s, items, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    items = np.take_along_axis(items, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1)
    items[np.isneginf(vals)] = -1
    return items


def gather_histories(seqs: UserSequences, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat ``(row, item)`` pairs of the histories of ``users`` (row = position in ``users``)."""
    starts = seqs.indptr[users]
    lens = seqs.indptr[users + 1] - starts
    total = int(lens.sum())
    rows = np.repeat(np.arange(len(users)), lens)
    first = np.repeat(np.cumsum(lens) - lens, lens)
    pos = np.repeat(starts, lens) + (np.arange(total) - first)
    return rows, seqs.items[pos].astype(np.int64)


def history_mask(histories: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """``bool [B, n_items]``: ``True`` where the item occurs in the row's history."""
    mask = np.zeros((len(histories), n_items), dtype=bool)
    lens = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    if lens.sum():
        rows = np.repeat(np.arange(len(histories)), lens)
        cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])
        mask[rows, cols] = True
    return mask
