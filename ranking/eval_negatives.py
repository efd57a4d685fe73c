"""Negatives of the sampled evaluation protocol (see :mod:`ranking.evaluation`).

A query's negatives depend only on the seed, the query's row id and its allowed candidates, never
on the batch it is scored in.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_negatives"]


def _row_uniform(seed: int, row_ids: np.ndarray, n_items: int) -> np.ndarray:
    """Uniform (0, 1] noise ``[B, n_items]`` whose row ``b`` depends only on ``(seed, row_ids[b])``.

    Each row has its own generator, so sampled negatives do not depend on the batch size or on
    which other queries are evaluated. (One generator call per row, vectorised over the items.)
    """
    out = np.empty((len(row_ids), n_items), dtype=np.float64)
    for b, row in enumerate(row_ids.tolist()):
        np.random.default_rng([seed, row]).random(out=out[b])
    np.subtract(1.0, out, out=out)  # (0, 1]: log(u) is finite
    return out


def sample_negatives(
    candidates: np.ndarray,
    n_negatives: int,
    *,
    weights: np.ndarray | None = None,
    seed: int = 0,
    row_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ``n_negatives`` distinct items per row from the row's allowed candidates.

    Parameters
    ----------
    candidates:
        ``bool [B, n_items]``: which items each row may draw.
    n_negatives:
        Items drawn per row, without replacement.
    weights:
        Optional non-negative ``[n_items]`` sampling weights (e.g. popularity counts); items with
        weight 0 are never drawn. ``None`` samples uniformly.
    seed, row_ids:
        The draw of a row is a deterministic function of ``(seed, row_ids[b])`` (default row ids
        ``0 .. B-1``) and of the row's candidates, independent of the other rows.

    Returns
    -------
    ``int64 [B, n_negatives]``. Raises :class:`ValueError` when a row has fewer allowed items
    than ``n_negatives``.

    Weighted sampling without replacement uses the exponential-keys method of Efraimidis and
    Spirakis: each item gets the key ``log(u) / w`` with ``u ~ U(0, 1)`` and the largest keys win.
    """
    allowed = np.asarray(candidates, dtype=bool)
    n_rows, n_items = allowed.shape
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    ids = np.arange(n_rows) if row_ids is None else np.asarray(row_ids, dtype=np.int64)
    if seed < 0 or (ids.size and ids.min() < 0):
        raise ValueError("seed and row_ids must be non-negative")
    u = _row_uniform(seed, ids, n_items)
    if weights is None:
        keys = u
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n_items,) or (w < 0).any():
            raise ValueError(f"weights must be {n_items} non-negative numbers")
        allowed = allowed & (w > 0)
        with np.errstate(divide="ignore"):  # w = 0 gives -inf, masked below anyway
            keys = np.log(u) / w
    available = allowed.sum(axis=1)
    short = np.flatnonzero(available < n_negatives)
    if short.size:
        b = int(short[0])
        which = "items with non-zero weight" if weights is not None else "items"
        raise ValueError(
            f"query row {int(ids[b])} has only {int(available[b])} {which} to draw negatives "
            f"from, fewer than n_negatives={n_negatives}"
        )
    keys[~allowed] = -np.inf  # keys is a fresh array owned here
    # The n_negatives largest keys sit at the end of an ascending partition.
    picked = np.argpartition(keys, n_items - n_negatives, axis=1)[:, n_items - n_negatives :]
    return np.sort(picked, axis=1).astype(np.int64)
