"""Which rows of an item-embedding table a client sends in a row-sparse update."""

from __future__ import annotations

import numpy as np

__all__ = ["changed_rows", "largest_change_rows", "touched_rows_from_sequences"]


def touched_rows_from_sequences(*arrays: np.ndarray, padded: bool = True) -> np.ndarray:
    """The embedding-table rows a client's data touches, sorted and unique (``int64``).

    Parameters
    ----------
    *arrays:
        Item data, e.g. the padded ``inputs`` and ``targets`` of
        :func:`ranking.data.sequences.sequence_windows` (and any sampled negatives).
    padded:
        ``True`` (default): the arrays hold ``item + 1`` with ``0`` as padding, i.e. they already
        are row indices of the ``[n_items + 1, D]`` table; the padding row 0 is left out (its
        embedding is fixed). ``False``: the arrays hold dense item ids (``Interactions.item``),
        which are shifted by +1.

    Notes
    -----
    With a loss that scores every item (full softmax), or an optimiser whose state moves rows
    without gradient (Adam momentum, weight decay), rows outside this set change locally too;
    sending only these rows deliberately drops those changes. :func:`changed_rows` gives the
    rows that actually changed.
    """
    if not arrays:
        return np.empty(0, dtype=np.int64)
    flat = np.concatenate([np.asarray(a, dtype=np.int64).reshape(-1) for a in arrays])
    if not padded:
        if len(flat) and flat.min() < 0:
            raise ValueError("item ids must be non-negative")
        return np.unique(flat + 1)
    if len(flat) and flat.min() < 0:
        raise ValueError("padded item ids must be non-negative (0 = padding)")
    rows = np.unique(flat)
    return rows[rows != 0]


def largest_change_rows(
    new_table: np.ndarray, old_table: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """The ``k`` rows (``int64``, sorted) whose update ``new - old`` has the largest L2 norm.

    With a full-softmax loss every row moves a little (the push-down of the items that were not
    the target); most of that movement sits in the few items the model wrongly ranked high. Sending
    these rows besides the touched ones keeps that signal at a small, fixed cost per client.
    Rows in ``exclude`` (already sent) and rows that did not move are never chosen; row 0 (the
    padding row) neither.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    new_table, old_table = _same_shape(new_table, old_table)
    diff = (new_table.astype(np.float64) - old_table).reshape(len(new_table), -1)
    norms = np.linalg.norm(diff, axis=1)
    norms[0] = 0.0
    if exclude is not None and len(exclude):
        norms[np.asarray(exclude, dtype=np.int64)] = 0.0
    k = min(k, int(np.count_nonzero(norms)))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.argpartition(-norms, k - 1)[:k]).astype(np.int64)


def changed_rows(new_table: np.ndarray, old_table: np.ndarray) -> np.ndarray:
    """Indices (``int64``) of the rows where ``new_table`` differs from ``old_table``."""
    new_table, old_table = _same_shape(new_table, old_table)
    diff = new_table != old_table
    if diff.ndim > 1:
        diff = diff.reshape(diff.shape[0], -1).any(axis=1)
    return np.flatnonzero(diff).astype(np.int64)


def _same_shape(new_table: np.ndarray, old_table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both tables as arrays; raises ``ValueError`` when their shapes differ."""
    new_table, old_table = np.asarray(new_table), np.asarray(old_table)
    if new_table.shape != old_table.shape:
        raise ValueError(f"table shapes differ: {new_table.shape} vs {old_table.shape}")
    return new_table, old_table
