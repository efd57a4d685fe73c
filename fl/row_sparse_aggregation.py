"""Weighted aggregation of decoded client updates, averaging each embedding row on its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from fl.payload_format import DecodedUpdate, State

__all__ = ["ROW_AVERAGES", "aggregate_row_sparse"]

RowAverage = Literal["senders", "all"]
ROW_AVERAGES: tuple[str, ...] = ("senders", "all")


def aggregate_row_sparse(
    global_state: Mapping[str, np.ndarray],
    updates: Sequence[tuple[DecodedUpdate, float]],
    row_average: RowAverage = "senders",
) -> State:
    """Weighted aggregation of decoded, possibly row-sparse client updates.

    * A key sent dense by every client is the weighted average over all updates (FedAvg).
    * For an embedding key (a client that sent the key dense counts as having sent every row),
      rows nobody sent (or sent only with weight 0) keep their global value, and each other row
      is, with ``row_average``:

      - ``"senders"``: the weighted average over only the clients that sent that row;
      - ``"all"``: the global row plus the senders' weighted changes divided by the weight of
        *every* update, i.e. dense FedAvg with a zero change for each row a client did not send.
        A row sent by few clients then moves as little as it would in a dense average, instead of
        as much as a row that every client sent.

    Parameters
    ----------
    global_state:
        The current global state.
    updates:
        ``((state, touched), weight)`` per client, as returned by
        :func:`fl.compression.decode_update`, with non-negative weights (typically the number of
        local training examples).

    Returns
    -------
    dict[str, numpy.ndarray]
        The new global state, in the global dtypes (integer arrays are rounded).
    """
    if not updates:
        raise ValueError("aggregate_row_sparse needs at least one update")
    if row_average not in ROW_AVERAGES:
        raise ValueError(f"row_average must be one of {ROW_AVERAGES}, got {row_average!r}")
    weights = np.array([float(w) for _, w in updates], dtype=np.float64)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"update weights must be finite and non-negative, got {weights.tolist()}")
    out: State = {}
    for key, ref_value in global_state.items():
        ref = np.asarray(ref_value)
        for i, ((state, _), _) in enumerate(updates):
            if key not in state:
                raise ValueError(f"update {i} lacks the array {key!r}")
        if not any(key in touched for (_, touched), _ in updates):
            total = weights.sum()
            if total <= 0:
                out[key] = ref.copy()
                continue
            acc = np.zeros(ref.shape, dtype=np.float64)
            for ((state, _), _), w in zip(updates, weights, strict=True):
                if w:
                    acc += w * np.asarray(state[key], dtype=np.float64)
            out[key] = _cast_like(acc / total, ref)
            continue
        acc = np.zeros(ref.shape, dtype=np.float64)
        wsum = np.zeros(ref.shape[0], dtype=np.float64)
        for ((state, touched), _), w in zip(updates, weights, strict=True):
            if not w:
                continue
            values = np.asarray(state[key], dtype=np.float64)
            if key in touched:
                rows = np.asarray(touched[key], dtype=np.int64)
                # rows are unique within one update, so fancy-index accumulation is exact
                acc[rows] += w * values
                wsum[rows] += w
            else:
                acc += w * values
                wsum += w
        result = ref.astype(np.float64, copy=True)
        hit = wsum > 0
        shape = (-1,) + (1,) * (ref.ndim - 1)
        if row_average == "senders":
            result[hit] = acc[hit] / wsum[hit].reshape(shape)
        else:  # the senders' changes over the weight of every update
            change = acc[hit] - wsum[hit].reshape(shape) * result[hit]
            result[hit] += change / weights.sum()
        out[key] = _cast_like(result, ref)
    return out


def _cast_like(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    if np.issubdtype(ref.dtype, np.integer):
        return np.rint(x).astype(ref.dtype)
    if ref.dtype == np.bool_:
        return x >= 0.5
    return x.astype(ref.dtype)
