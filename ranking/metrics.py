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

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "bootstrap_ci",
    "average_popularity",
    "calibration_kl",
    "coverage",
    "gini_index",
    "hit_rate",
    "intra_list_diversity",
    "long_tail_mask",
    "mrr",
    "ndcg",
    "novelty",
    "tail_share",
    "violation_rate",
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


# --------------------------------------------------------------------------------------------
# Beyond accuracy: diversity, exposure, long tail, calibration, rule violations
# --------------------------------------------------------------------------------------------


def intra_list_diversity(topk: np.ndarray, item_vectors: np.ndarray) -> float:
    """Mean intra-list diversity: per list, the mean of ``1 - cos(v_i, v_j)`` over its pairs of
    distinct slots ``i < j``, averaged over the lists with at least two items.

    ``item_vectors`` is ``[n_items, d]`` (normalised here, so any non-zero vectors will do).
    """
    vectors = np.asarray(item_vectors, dtype=np.float64)
    if vectors.ndim != 2:
        raise ValueError(f"item_vectors must be a 2-D array [n_items, d], got {vectors.shape}")
    _valid_entries(topk, len(vectors))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    values = []
    for row in np.asarray(topk):
        items = row[row >= 0]
        m = len(items)
        if m < 2:
            continue
        sims = unit[items] @ unit[items].T
        pairs = sims[np.triu_indices(m, k=1)]
        values.append(float(np.mean(1.0 - pairs)))
    return float(np.mean(values)) if values else float("nan")


def gini_index(topk: np.ndarray, n_items: int) -> float:
    """Gini index of item exposure (RecBole's ``GiniIndex``): 0 when every item is recommended
    equally often, ``(n_items - 1) / n_items`` when one item takes every slot.

    With the exposure counts ``c`` of all ``n_items`` items (zeros included) sorted ascending,
    ``G = sum_i (2i - n - 1) c_(i) / (n sum c)``, ``i = 1..n``. Empty slots are ignored.
    """
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    flat = _valid_entries(topk, n_items)
    if flat.size == 0:
        return float("nan")
    counts = np.sort(np.bincount(flat, minlength=n_items)).astype(np.float64)
    index = np.arange(1, n_items + 1, dtype=np.float64)
    return float(np.sum((2 * index - n_items - 1) * counts) / (n_items * counts.sum()))


def long_tail_mask(
    item_counts: np.ndarray, head_share: float = 0.2, *, by: str = "items"
) -> np.ndarray:
    """``bool [n_items]``: the long-tail items, i.e. those outside the popular head.

    ``by="items"``: the head is the ``ceil(head_share * n_items)`` items with the most
    interactions (ties to the lower id), as RecBole's ``tail_ratio`` splits items.
    ``by="interactions"``: the head is the smallest set of most-interacted items that together
    hold at least ``head_share`` of all interactions.
    """
    counts = np.asarray(item_counts, dtype=np.float64)
    if counts.ndim != 1 or (counts.size and counts.min() < 0):
        raise ValueError("item_counts must be a 1-D array of non-negative counts")
    if not 0.0 <= head_share <= 1.0:
        raise ValueError(f"head_share must lie in [0, 1], got {head_share}")
    order = np.lexsort((np.arange(counts.size), -counts))
    if by == "items":
        n_head = int(np.ceil(head_share * counts.size - 1e-9))
    elif by == "interactions":
        total = counts.sum()
        cumulative = np.cumsum(counts[order])
        n_head = 0
        if head_share > 0 and total > 0:
            n_head = int(np.searchsorted(cumulative, head_share * total - 1e-9)) + 1
    else:
        raise ValueError(f"by must be 'items' or 'interactions', got {by!r}")
    tail = np.ones(counts.size, dtype=bool)
    tail[order[:n_head]] = False
    return tail


def tail_share(topk: np.ndarray, tail_mask: np.ndarray) -> float:
    """Mean share of long-tail items per list (RecBole's ``TailPercentage``, APLT).

    ``tail_mask`` is ``bool [n_items]`` (e.g. :func:`long_tail_mask`). Each list counts its
    non-empty slots; lists with none are left out.
    """
    mask = np.asarray(tail_mask, dtype=bool)
    if mask.ndim != 1:
        raise ValueError("tail_mask must be a 1-D boolean array over the items")
    _valid_entries(topk, len(mask))
    lists = np.asarray(topk)
    filled = lists >= 0
    per_list = filled.sum(axis=1)
    in_tail = (mask[np.where(filled, lists, 0)] & filled).sum(axis=1)
    keep = per_list > 0
    if not keep.any():
        return float("nan")
    return float(np.mean(in_tail[keep] / per_list[keep]))


def calibration_kl(
    topk: np.ndarray,
    histories: Sequence[np.ndarray],
    category: np.ndarray,
    n_categories: int,
    alpha: float = 0.01,
) -> float:
    """Mean miscalibration ``KL(p || q~)`` of the lists (Steck, 2018), in nats.

    For each user, ``p`` is the category distribution of ``histories[u]`` and ``q`` that of the
    list ``topk[u]`` (every item weighs the same; items of category ``-1`` and empty slots count in
    neither), and ``q~ = (1 - alpha) q + alpha p``. Users whose history has no categorised item
    are left out. A list with no categorised item scores ``log(1 / alpha)``.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    cats = np.asarray(category)
    lists = np.asarray(topk)
    _valid_entries(lists, len(cats))
    if len(histories) != len(lists):
        raise ValueError(f"{len(histories)} histories for {len(lists)} lists")
    values = []
    for row, history in zip(lists, histories, strict=True):
        h = cats[np.asarray(history, dtype=np.int64)]
        h = h[h >= 0]
        if h.size == 0:
            continue
        p = np.bincount(h, minlength=n_categories).astype(np.float64) / h.size
        r = cats[row[row >= 0]]
        r = r[r >= 0]
        q = np.bincount(r, minlength=n_categories) / r.size if r.size else np.zeros(n_categories)
        support = p > 0
        mixed = (1.0 - alpha) * q[support] + alpha * p[support]
        values.append(float(np.sum(p[support] * np.log(p[support] / mixed))))
    return float(np.mean(values)) if values else float("nan")


def violation_rate(topk: np.ndarray, violates: Callable[[int, np.ndarray], bool]) -> float:
    """Fraction of lists that break a rule: ``violates(u, items)`` gets the row index and the
    list's non-empty items.

    With a hard rule of :mod:`ranking.rules` (a filter or a category cap), e.g. how often the
    neural-only lists show an already-seen item::

        rule = SeenFilter()
        violation_rate(topk, lambda u, items: rule.violations(items, ctx.for_request(hist[u])))
    """
    lists = np.asarray(topk)
    if lists.ndim != 2:
        raise ValueError(f"topk must be a 2-D array [U, K], got shape {lists.shape}")
    if lists.shape[0] == 0:
        return float("nan")
    return float(np.mean([bool(violates(u, row[row >= 0])) for u, row in enumerate(lists)]))


def bootstrap_ci(
    ranks: np.ndarray,
    metric: Callable[[np.ndarray, int], float],
    k: int,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(ranks, k)`` over the queries (one per user in a
    leave-one-out split, so this resamples users)."""
    r = np.asarray(ranks, dtype=np.int64)
    if r.size == 0 or resamples < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.array(
        [metric(r[rng.integers(0, r.size, r.size)], k) for _ in range(resamples)], dtype=np.float64
    )
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return float(low), float(high)
