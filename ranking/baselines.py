"""Non-neural baselines of the ranking tier: :class:`MostPopular` and :class:`ItemKNN`.

Both follow the :class:`ranking.evaluation.Scorer` protocol and are fitted with
``fit(interactions) -> self`` on training interactions.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ranking.data.interactions import Interactions
from ranking.errors import DataError
from ranking.evaluation import topk_items

__all__ = ["ItemKNN", "MostPopular"]


def _not_fitted(name: str) -> RuntimeError:
    return RuntimeError(f"{name} is not fitted; call fit(interactions) first")


class MostPopular:
    """Recommends the items with the most training interactions, the same list for every user."""

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None

    def fit(self, interactions: Interactions) -> MostPopular:
        """Count the interactions of every item."""
        self.counts = interactions.item_counts().astype(np.float32)
        return self

    @property
    def n_items(self) -> int:
        if self.counts is None:
            raise _not_fitted("MostPopular")
        return len(self.counts)

    def score(self, histories: list[np.ndarray], users: np.ndarray) -> np.ndarray:
        """``float32 [B, n_items]``: every row is the item counts."""
        if self.counts is None:
            raise _not_fitted("MostPopular")
        return np.tile(self.counts, (len(histories), 1))


def _keep_top_per_row(
    rows: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    n_rows: int,
    k: int,
    *,
    cell_budget: int = 1 << 24,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest entries of every row of a COO matrix sorted by (row, col).

    Ties at the cut-off go to the lower column. Rows with more than ``k`` entries are processed in
    blocks of similar length, each padded to a dense ``[rows, longest]`` array of at most about
    ``cell_budget`` cells, so the work is proportional to the number of entries.
    """
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    lengths = np.diff(indptr)
    keep = np.ones(len(rows), dtype=bool)
    long_rows = np.flatnonzero(lengths > k)
    long_rows = long_rows[np.argsort(lengths[long_rows], kind="stable")]
    start = 0
    while start < len(long_rows):
        stop = start + 1
        # Grow the block while it fits the budget (rows are sorted by length, so the last row
        # of the block is the longest).
        while (
            stop < len(long_rows)
            and (stop + 1 - start) * int(lengths[long_rows[stop]]) <= cell_budget
        ):
            stop += 1
        block = long_rows[start:stop]
        longest = int(lengths[block[-1]])
        pos = indptr[block][:, None] + np.arange(longest)[None, :]
        inside = np.arange(longest)[None, :] < lengths[block][:, None]
        padded = np.where(inside, vals[np.minimum(pos, len(vals) - 1)], -np.inf)
        best = topk_items(padded, k)  # column positions within each row, ties -> lower column
        keep[pos[inside]] = False
        keep[np.take_along_axis(pos, best, axis=1).reshape(-1)] = True
        start = stop
    return rows[keep], cols[keep], vals[keep]


class ItemKNN:
    """Item-based nearest neighbours over the user-item incidence matrix.

    Fitting builds the binary user x item matrix ``X`` of the training log (a repeated interaction
    counts once) and the item-item similarity ``S``:

    * ``similarity="cosine"``: ``S[i, j] = |U_i & U_j| / sqrt(|U_i| |U_j|)``, where ``U_i`` is the
      set of users of item ``i``;
    * ``similarity="cooccurrence"``: ``S[i, j] = |U_i & U_j|``.

    The diagonal is zero and each row ``i`` keeps only its ``k_neighbors`` largest entries (the
    neighbours of item ``i``; ties are broken towards the lower item id). ``k_neighbors=None``
    keeps them all.

    The score of item ``j`` for a user is ``sum_i w_i S[i, j]`` over the distinct items ``i`` among
    the user's last ``window`` history items (``None``: the whole history). The weight of an item
    is ``recency_decay ** t`` where ``t`` is how many steps before the end of the history its most
    recent occurrence is (``t = 0`` for the last item), so ``recency_decay=1`` weights all items
    equally. A user with an empty history gets all-zero scores.

    Similarities are stored as a ``scipy.sparse`` CSR matrix of ``float32``; its size is at most
    ``n_items * k_neighbors``, but fitting materialises the full co-occurrence matrix ``X.T @ X``
    first.
    """

    def __init__(
        self,
        k_neighbors: int | None = 100,
        *,
        window: int | None = None,
        recency_decay: float = 1.0,
        similarity: str = "cosine",
    ) -> None:
        if k_neighbors is not None and k_neighbors < 1:
            raise ValueError(f"k_neighbors must be >= 1 or None, got {k_neighbors}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        if not 0.0 < recency_decay <= 1.0:
            raise ValueError(f"recency_decay must lie in (0, 1], got {recency_decay}")
        if similarity not in ("cosine", "cooccurrence"):
            raise ValueError(f"similarity must be 'cosine' or 'cooccurrence', got {similarity!r}")
        self.k_neighbors = k_neighbors
        self.window = window
        self.recency_decay = recency_decay
        self.similarity = similarity
        self.sim: sp.csr_array | None = None

    @property
    def n_items(self) -> int:
        if self.sim is None:
            raise _not_fitted("ItemKNN")
        return self.sim.shape[0]

    def fit(self, interactions: Interactions) -> ItemKNN:
        """Compute the truncated item-item similarity matrix from ``interactions``."""
        n_users, n_items = interactions.n_users, interactions.n_items
        if len(interactions) == 0:
            raise DataError("ItemKNN cannot be fitted on an empty interaction log")
        x = sp.csr_array(
            (
                np.ones(len(interactions), dtype=np.float32),
                (interactions.user.astype(np.int64), interactions.item.astype(np.int64)),
            ),
            shape=(n_users, n_items),
        )
        x.sum_duplicates()
        x.data[:] = 1.0
        co = (x.T @ x).tocsr()
        co.sort_indices()
        rows = np.repeat(np.arange(n_items), np.diff(co.indptr))
        cols = co.indices.astype(np.int64)
        vals = co.data.astype(np.float64)
        if self.similarity == "cosine":
            norms = np.sqrt(np.asarray(x.sum(axis=0)).reshape(-1).astype(np.float64))
            vals = vals / (norms[rows] * norms[cols])
        keep = (rows != cols) & (vals > 0)
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        if self.k_neighbors is not None:
            rows, cols, vals = _keep_top_per_row(rows, cols, vals, n_items, self.k_neighbors)
        sim = sp.csr_array((vals.astype(np.float32), (rows, cols)), shape=(n_items, n_items))
        sim.sort_indices()
        self.sim = sim
        return self

    def _profiles(self, histories: list[np.ndarray]) -> sp.csr_array:
        """``[B, n_items]`` sparse weights of the items in each (windowed) history."""
        n_items = self.n_items
        tails = [np.asarray(h, dtype=np.int64) for h in histories]
        if self.window is not None:
            tails = [h[-self.window :] for h in tails]
        lens = np.fromiter((len(h) for h in tails), dtype=np.int64, count=len(tails))
        total = int(lens.sum())
        if total == 0:
            return sp.csr_array((len(tails), n_items), dtype=np.float32)
        items = np.concatenate(tails)
        if items.min() < 0 or items.max() >= n_items:
            raise ValueError(f"history items must lie in 0..{n_items - 1}")
        rows = np.repeat(np.arange(len(tails)), lens)
        offset = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        steps_from_end = lens[rows] - 1 - offset
        weights = np.power(self.recency_decay, steps_from_end.astype(np.float64))
        # Keep one entry per (row, item): the most recent occurrence (largest weight).
        order = np.lexsort((steps_from_end, items, rows))
        rows, items, weights = rows[order], items[order], weights[order]
        first = np.ones(total, dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])
        return sp.csr_array(
            (weights[first].astype(np.float32), (rows[first], items[first])),
            shape=(len(tails), n_items),
        )

    def score(self, histories: list[np.ndarray], users: np.ndarray) -> np.ndarray:
        """``float32 [B, n_items]``: summed similarity of every item to the user's history items."""
        if self.sim is None:
            raise _not_fitted("ItemKNN")
        profiles = self._profiles(histories)
        return np.asarray((profiles @ self.sim).toarray(), dtype=np.float32)
