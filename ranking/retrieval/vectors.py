"""Checking and shaping the vectors, ids and counts given to a FAISS index."""

from __future__ import annotations

from typing import Any

import numpy as np

from ranking.errors import ConfigError, DataError

__all__ = ["as_ids", "as_matrix", "l2_normalise", "positive_int"]


def as_matrix(x: Any, dim: int, what: str) -> np.ndarray:
    """``x`` as a finite float32 ``[n, dim]`` array (a single vector becomes one row)."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be a numeric array ({exc})") from exc
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise DataError(f"{what} must be a 2-D array [n, {dim}], got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise DataError(f"{what} have dimension {arr.shape[1]}, but the index has dimension {dim}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(
            f"{what} contain NaN or infinite values ({bad.size} rows, first: {bad[:5].tolist()})"
        )
    return np.ascontiguousarray(arr)


def l2_normalise(x: np.ndarray, what: str = "vectors") -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (a new float32 array); zero rows raise :class:`DataError`."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        bad = np.flatnonzero(zero)
        raise DataError(
            f"{what} contain all-zero rows, which cannot be L2-normalised "
            f"({bad.size} rows, first: {bad[:5].tolist()})"
        )
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def as_ids(ids: Any, n: int) -> np.ndarray:
    """``ids`` as a contiguous ``int64`` array of ``n`` non-negative ids."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise DataError(f"ids must be a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise DataError(f"got {arr.shape[0]} ids for {n} vectors")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise DataError(f"ids must be non-negative (-1 marks a missing result), got {arr.min()}")
    return np.ascontiguousarray(arr)


def positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int``; raises :class:`ConfigError` unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
