"""Row-sparse, optionally quantised model updates and their aggregation.

A model state is a ``dict[str, np.ndarray]``. The item embedding tables (``[n_items + 1, D]``,
row 0 = padding) are named by ``embedding_keys``; a client usually touches only the rows of the
items in its own data, so only those rows are sent.

Payload format
--------------
:func:`encode_update` returns a flat ``dict[str, np.ndarray]`` (string keys, numpy arrays only,
so it maps one-to-one onto a Flower ``ArrayRecord``):

* ``<key>``: a dense array (every state entry that is not an embedding table);
* ``<key>::rows`` (``int64 [k]``, sorted, unique) and ``<key>::values`` (``[k, ...]``): the
  touched rows of an embedding table and their values;
* ``<key>::scale`` (``float32``): present only for int8-quantised arrays; one scale per row for
  arrays of two or more dimensions (per sent row for embedding values), one per tensor (shape
  ``(1,)``) otherwise.

Quantisation applies to floating-point arrays only (integer buffers always travel as they are):
``"fp16"`` casts to ``float16``; ``"int8"`` stores ``q = round(x / s)`` with the symmetric scale
``s = max|x| / 127`` so that ``|x - q * s| <= s / 2``. Decoding infers the scheme from the dtypes,
so a payload needs no metadata. State keys must not contain :data:`SEP`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np

from encoders.errors import ConfigError

__all__ = [
    "QUANTIZE_MODES",
    "ROWS",
    "SCALE",
    "SEP",
    "VALUES",
    "aggregate_row_sparse",
    "changed_rows",
    "decode_update",
    "dequantize_int8",
    "encode_update",
    "payload_bytes",
    "quantize_int8",
    "sparse_keys",
    "touched_rows_from_sequences",
]

Quantize = Literal["none", "fp16", "int8"]
QUANTIZE_MODES: tuple[str, ...] = ("none", "fp16", "int8")

SEP = "::"
ROWS = SEP + "rows"
VALUES = SEP + "values"
SCALE = SEP + "scale"

State = dict[str, np.ndarray]
DecodedUpdate = tuple[State, dict[str, np.ndarray]]


# --------------------------------------------------------------------------------------------
# Quantisation
# --------------------------------------------------------------------------------------------


def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric round-to-nearest int8 quantisation.

    Returns ``(q, scale)`` with ``q`` ``int8`` of ``x``'s shape and ``scale`` ``float32`` of shape
    ``(x.shape[0],)`` for arrays of two or more dimensions (one scale per row) or ``(1,)`` otherwise.
    Rows that are all zero get scale 0.
    """
    x64 = np.asarray(x, dtype=np.float64)
    if x64.ndim >= 2:
        flat = x64.reshape(x64.shape[0], int(np.prod(x64.shape[1:])))
        amax = np.abs(flat).max(axis=1) if flat.shape[1] else np.zeros(flat.shape[0])
    else:
        amax = np.array([np.abs(x64).max() if x64.size else 0.0])
    scale = (amax / 127.0).astype(np.float32)
    s64 = scale.astype(np.float64)
    safe = np.where(s64 > 0, s64, 1.0)
    bshape = (-1,) + (1,) * (x64.ndim - 1) if x64.ndim >= 2 else ()
    q = np.rint(x64 / (safe.reshape(bshape) if x64.ndim >= 2 else safe[0]))
    q = np.clip(q, -127, 127).astype(np.int8)
    return q, scale


def dequantize_int8(
    q: np.ndarray, scale: np.ndarray, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """Inverse of :func:`quantize_int8`, cast to ``dtype``."""
    q64 = np.asarray(q, dtype=np.float64)
    s64 = np.asarray(scale, dtype=np.float64)
    out = (
        q64 * s64.reshape((-1,) + (1,) * (q64.ndim - 1)) if q64.ndim >= 2 else q64 * s64.reshape(())
    )
    return out.astype(dtype)


def _is_float(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.floating)


def _encode_array(key: str, x: np.ndarray, quantize: str, out: dict[str, np.ndarray]) -> None:
    if not _is_float(x) or quantize == "none":
        out[key] = np.array(x, copy=True)
    elif quantize == "fp16":
        # values beyond the float16 range become +-Inf; check_update rejects them on arrival
        with np.errstate(over="ignore"):
            out[key] = x.astype(np.float16)
    else:
        q, scale = quantize_int8(x)
        out[key] = q
        out[_scale_key(key)] = scale


def _scale_key(key: str) -> str:
    # the scale of "<k>::values" is "<k>::scale"; the scale of a dense "<k>" is "<k>::scale" too
    return (key[: -len(VALUES)] if key.endswith(VALUES) else key) + SCALE


def _decode_array(key: str, x: np.ndarray, scale: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    if scale is not None:
        return dequantize_int8(x, scale, dtype)
    return np.asarray(x).astype(dtype, copy=True)


# --------------------------------------------------------------------------------------------
# Encode / decode
# --------------------------------------------------------------------------------------------


def encode_update(
    new_state: Mapping[str, np.ndarray],
    embedding_keys: Iterable[str],
    touched_rows: np.ndarray | Mapping[str, np.ndarray],
    quantize: Quantize = "none",
) -> dict[str, np.ndarray]:
    """Encode a client's new model state as a row-sparse, optionally quantised payload.

    Parameters
    ----------
    new_state:
        The client's state after local training.
    embedding_keys:
        Names of the 2-D embedding tables to send row-sparse.
    touched_rows:
        Rows to send: one index array used for every embedding table, or a mapping from embedding
        key to its rows. Duplicates are removed and rows are sorted.
    quantize:
        ``"none"``, ``"fp16"`` or ``"int8"`` (see the module docstring).

    Returns
    -------
    dict[str, numpy.ndarray]
        The payload (format in the module docstring).

    Raises
    ------
    ConfigError
        On an unknown quantisation mode, an embedding key absent from the state or not 2-D, a state
        key containing ``"::"``, or touched rows out of range.
    """
    if quantize not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    emb_keys = list(dict.fromkeys(embedding_keys))
    for key in new_state:
        if SEP in key:
            raise ConfigError(f"state key {key!r} contains the reserved separator {SEP!r}")
    for key in emb_keys:
        if key not in new_state:
            raise ConfigError(f"embedding key {key!r} is not in the model state")
        if np.asarray(new_state[key]).ndim != 2:
            raise ConfigError(
                f"embedding key {key!r} must name a 2-D table, got shape {np.shape(new_state[key])}"
            )
    payload: dict[str, np.ndarray] = {}
    for key, value in new_state.items():
        x = np.asarray(value)
        if key not in emb_keys:
            _encode_array(key, x, quantize, payload)
            continue
        if isinstance(touched_rows, Mapping):
            if key not in touched_rows:
                raise ConfigError(f"no touched rows given for embedding key {key!r}")
            raw = touched_rows[key]
        else:
            raw = touched_rows
        rows = np.unique(np.asarray(raw).reshape(-1)).astype(np.int64)
        if len(rows) and (rows[0] < 0 or rows[-1] >= x.shape[0]):
            raise ConfigError(
                f"touched rows of {key!r} must lie in 0..{x.shape[0] - 1}, "
                f"got {int(rows[0])}..{int(rows[-1])}"
            )
        payload[key + ROWS] = rows
        _encode_array(key + VALUES, x[rows], quantize, payload)
    return payload


def sparse_keys(payload: Mapping[str, np.ndarray]) -> list[str]:
    """The embedding keys sent row-sparse in ``payload``."""
    return [k[: -len(ROWS)] for k in payload if k.endswith(ROWS)]


def decode_update(
    payload: Mapping[str, np.ndarray],
    reference_state: Mapping[str, np.ndarray],
    *,
    validate: bool = True,
) -> DecodedUpdate:
    """Dequantise and rebuild a payload made by :func:`encode_update`.

    Parameters
    ----------
    payload:
        The received arrays.
    reference_state:
        The global state the update refers to: gives every key's dtype and shape.
    validate:
        Run :func:`fl.validation.check_update` first (raises ``RejectedUpdate``).

    Returns
    -------
    state:
        Every reference key, in the reference dtype: the full array for dense keys, the
        ``[k, D]`` sent rows for row-sparse embedding keys.
    touched:
        For each row-sparse embedding key, the ``int64 [k]`` indices of the rows in ``state[key]``.
    """
    if validate:
        from fl.validation import check_update

        check_update(payload, reference_state)
    state: State = {}
    touched: dict[str, np.ndarray] = {}
    for key, ref in reference_state.items():
        dtype = np.asarray(ref).dtype
        if key + ROWS in payload:
            touched[key] = np.asarray(payload[key + ROWS], dtype=np.int64).copy()
            state[key] = _decode_array(key, payload[key + VALUES], payload.get(key + SCALE), dtype)
        else:
            state[key] = _decode_array(key, payload[key], payload.get(key + SCALE), dtype)
    return state, touched


def payload_bytes(payload: Mapping[str, np.ndarray]) -> int:
    """Total size in bytes of the arrays in ``payload`` (a payload or a plain state)."""
    return int(sum(np.asarray(a).nbytes for a in payload.values()))


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def aggregate_row_sparse(
    global_state: Mapping[str, np.ndarray],
    updates: Sequence[tuple[DecodedUpdate, float]],
) -> State:
    """Weighted aggregation of decoded, possibly row-sparse client updates.

    * A key sent dense by every client is the weighted average over all updates (FedAvg).
    * For an embedding key, each row is the weighted average over only the clients that sent
      that row (a client that sent the key dense counts as having sent every row); rows nobody
      sent (or sent only with weight 0) keep their global value.

    Parameters
    ----------
    global_state:
        The current global state.
    updates:
        ``((state, touched), weight)`` per client, as returned by :func:`decode_update`, with
        non-negative weights (typically the number of local training examples).

    Returns
    -------
    dict[str, numpy.ndarray]
        The new global state, in the global dtypes (integer arrays are rounded).
    """
    if not updates:
        raise ValueError("aggregate_row_sparse needs at least one update")
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
        result[hit] = acc[hit] / wsum[hit].reshape((-1,) + (1,) * (ref.ndim - 1))
        out[key] = _cast_like(result, ref)
    return out


def _cast_like(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    if np.issubdtype(ref.dtype, np.integer):
        return np.rint(x).astype(ref.dtype)
    if ref.dtype == np.bool_:
        return x >= 0.5
    return x.astype(ref.dtype)


# --------------------------------------------------------------------------------------------
# Which rows
# --------------------------------------------------------------------------------------------


def touched_rows_from_sequences(*arrays: np.ndarray, padded: bool = True) -> np.ndarray:
    """The embedding-table rows a client's data touches, sorted and unique (``int64``).

    Parameters
    ----------
    *arrays:
        Item data, e.g. the padded ``inputs`` and ``targets`` of
        :func:`ranking.data.sequence_windows` (and any sampled negatives).
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


def largest_change_rows(new_table: np.ndarray, old_table: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` rows (``int64``, sorted) whose update ``new - old`` has the largest L2 norm.

    With a full-softmax loss every row moves a little (the push-down of the items that were not
    the target); most of that movement sits in the few items the model wrongly ranked high. Sending
    these rows besides the touched ones keeps that signal at a small, fixed cost per client.
    Rows in ``exclude`` (already sent) and rows that did not move are never chosen; row 0 (the
    padding row) neither.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    new_table, old_table = np.asarray(new_table), np.asarray(old_table)
    if new_table.shape != old_table.shape:
        raise ValueError(f"table shapes differ: {new_table.shape} vs {old_table.shape}")
    norms = np.linalg.norm((new_table.astype(np.float64) - old_table).reshape(len(new_table), -1), axis=1)
    norms[0] = 0.0
    if exclude is not None and len(exclude):
        norms[np.asarray(exclude, dtype=np.int64)] = 0.0
    k = min(k, int(np.count_nonzero(norms)))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.argpartition(-norms, k - 1)[:k]).astype(np.int64)


def changed_rows(new_table: np.ndarray, old_table: np.ndarray) -> np.ndarray:
    """Indices (``int64``) of the rows where ``new_table`` differs from ``old_table``."""
    new_table, old_table = np.asarray(new_table), np.asarray(old_table)
    if new_table.shape != old_table.shape:
        raise ValueError(f"table shapes differ: {new_table.shape} vs {old_table.shape}")
    diff = new_table != old_table
    if diff.ndim > 1:
        diff = diff.reshape(diff.shape[0], -1).any(axis=1)
    return np.flatnonzero(diff).astype(np.int64)
