"""Brute-force ground truth for L1 retrieval, and the recall of an approximate index against it."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from ranking.errors import DataError
from ranking.retrieval.exclusion import compact
from ranking.retrieval.vectors import as_ids, as_matrix, positive_int

__all__ = ["exact_topk", "recall_at_k"]


def exact_topk(
    vectors: Any, queries: Any, k: int, *, ids: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``k`` by inner product (no normalisation: pass normalised vectors for cosine).

    Returns ``[B, k]`` scores and positions into ``vectors`` (or ``ids[position]`` if ``ids`` is
    given), padded with ``-1``/``-inf`` when ``k`` exceeds the number of vectors.
    """
    positive_int("k", k)
    xb = np.asarray(vectors, dtype=np.float32)
    if xb.ndim != 2 or xb.shape[0] == 0:
        raise DataError(f"vectors must be a non-empty 2-D array, got shape {xb.shape}")
    xq = as_matrix(queries, xb.shape[1], "queries")
    xb = as_matrix(xb, xb.shape[1], "vectors")
    kk = min(int(k), xb.shape[0])
    scores, pos = faiss.knn(xq, xb, kk, metric=faiss.METRIC_INNER_PRODUCT)
    scores, pos = compact(scores, pos, np.zeros(pos.shape, bool), int(k))
    if ids is not None:
        id_arr = as_ids(ids, xb.shape[0])
        pos = np.where(pos >= 0, id_arr[np.maximum(pos, 0)], -1)
    return scores, pos


def recall_at_k(found_ids: Any, true_ids: Any) -> float:
    """Mean over queries of ``|found ∩ true| / |true|`` (``-1`` entries ignored).

    ``true_ids`` is ``[B, k]`` (e.g. from :func:`exact_topk`); ``found_ids`` is ``[B, k']``
    (usually ``k' = k``).
    """
    found = np.asarray(found_ids)
    true = np.asarray(true_ids)
    if found.ndim != 2 or true.ndim != 2 or found.shape[0] != true.shape[0]:
        raise DataError(
            f"found_ids and true_ids must be 2-D with the same number of rows, "
            f"got {found.shape} and {true.shape}"
        )
    recalls = []
    for f, t in zip(found, true, strict=True):
        t = t[t >= 0]
        if t.size:
            recalls.append(np.isin(t, f[f >= 0]).mean())
    return float(np.mean(recalls)) if recalls else 0.0
