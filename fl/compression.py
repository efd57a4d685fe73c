"""Row-sparse, optionally quantised model updates: encoding and decoding.

A model state is a ``dict[str, np.ndarray]``. The item embedding tables (``[n_items + 1, D]``,
row 0 = padding) are named by ``embedding_keys``; a client usually touches only the rows of the
items in its own data (:mod:`fl.row_selection`), so only those rows are sent.
:func:`encode_update` writes the payload laid out in :mod:`fl.payload_format`;
:func:`decode_update` rebuilds it; :mod:`fl.row_sparse_aggregation` averages decoded updates.

Quantisation (:mod:`fl.quantization`) applies to floating-point arrays only (integer buffers
always travel as they are), and it encodes the *change* from the reference state (the global state
the client started from), not the weights: one round's change is far smaller than the weights, so
an int8 grid over the weights (step ``max|w| / 127``) would round most of it away, and it would do
so the same way for every client (all start from the same weights), which averaging cannot undo.
The server holds the reference and adds it back. Decoding infers the scheme from the dtypes, so a
payload needs no metadata.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from encoders.errors import ConfigError
from fl.payload_format import ROWS, SCALE, SEP, VALUES, DecodedUpdate, State, payload_bytes
from fl.quantization import QUANTIZE_MODES, Quantize, dequantize_int8, quantize_int8
from fl.row_selection import largest_change_rows, touched_rows_from_sequences
from fl.row_sparse_aggregation import aggregate_row_sparse
from fl.validation import check_update

__all__ = [
    "decode_update",
    "encode_update",
    # Kept importable from here for fl/client_app.py and fl/server_app.py; their homes are
    # fl.payload_format, fl.row_selection and fl.row_sparse_aggregation.
    "aggregate_row_sparse",
    "largest_change_rows",
    "payload_bytes",
    "touched_rows_from_sequences",
]


def row_index_dtype(n_rows: int) -> np.dtype:
    """The narrowest unsigned integer type that indexes a table of ``n_rows`` rows (``uint16``
    up to 65,536 rows: a quarter of ``int64``'s bytes per sent row)."""
    return np.min_scalar_type(max(0, n_rows - 1))


def _is_float(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.floating)


def _encode_array(key: str, x: np.ndarray, quantize: str, out: dict[str, np.ndarray]) -> None:
    if not _is_float(x) or quantize == "none":
        out[key] = np.array(x, copy=True)
    elif quantize == "fp16":
        if x.dtype == np.float16:  # decoding tells a change from weights by the narrower dtype
            raise ConfigError(
                f"quantize='fp16' needs float32 or float64 weights; {key!r} is float16"
            )
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


def _decode_array(
    x: np.ndarray, scale: np.ndarray | None, ref: np.ndarray, dtype: np.dtype
) -> np.ndarray:
    """The array a payload entry stands for; ``ref``: the reference values at the same places."""
    if scale is not None:  # int8: the change from the reference
        return (np.asarray(ref, dtype=np.float64) + dequantize_int8(x, scale, np.float64)).astype(
            dtype
        )
    if _is_float(np.asarray(x)) and np.asarray(x).dtype != dtype:  # fp16: the change too
        return (np.asarray(ref, dtype=np.float64) + np.asarray(x, dtype=np.float64)).astype(dtype)
    return np.asarray(x).astype(dtype, copy=True)


def encode_update(
    new_state: Mapping[str, np.ndarray],
    embedding_keys: Iterable[str],
    touched_rows: np.ndarray | Mapping[str, np.ndarray],
    quantize: Quantize = "none",
    reference_state: Mapping[str, np.ndarray] | None = None,
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
        ``"none"``, ``"fp16"`` or ``"int8"`` (see :mod:`fl.quantization`): ``fp16`` and ``int8``
        encode ``new_state - reference_state`` of floating-point arrays.
    reference_state:
        The global state the client started from (needed when ``quantize`` is not ``"none"``;
        :func:`decode_update` adds it back).

    Returns
    -------
    dict[str, numpy.ndarray]
        The payload (format in :mod:`fl.payload_format`).

    Raises
    ------
    ConfigError
        On an unknown quantisation mode, an embedding key absent from the state or not 2-D, a state
        key containing ``"::"``, touched rows out of range, or a quantised update without a
        reference state that has every key in the same shape.
    """
    if quantize not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if quantize != "none":
        if reference_state is None:
            raise ConfigError(
                f"quantize={quantize!r} encodes the change from a reference state: pass reference_state"
            )
        for key, value in new_state.items():
            if key not in reference_state or np.shape(reference_state[key]) != np.shape(value):
                raise ConfigError(
                    f"reference_state lacks {key!r} or has another shape than the new state's "
                    f"{np.shape(value)}"
                )
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
        change = x
        if quantize != "none" and _is_float(x):
            assert reference_state is not None
            change = x.astype(np.float64) - np.asarray(reference_state[key], dtype=np.float64)
        if key not in emb_keys:
            _encode_array(key, change.astype(x.dtype), quantize, payload)
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
        payload[key + ROWS] = rows.astype(row_index_dtype(x.shape[0]))
        _encode_array(key + VALUES, change[rows].astype(x.dtype), quantize, payload)
    return payload


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
        check_update(payload, reference_state)
    state: State = {}
    touched: dict[str, np.ndarray] = {}
    for key, ref in reference_state.items():
        dtype = np.asarray(ref).dtype
        if key + ROWS in payload:
            rows = np.asarray(payload[key + ROWS], dtype=np.int64).copy()
            touched[key] = rows
            values, scale = payload[key + VALUES], payload.get(key + SCALE)
            state[key] = _decode_array(values, scale, np.asarray(ref)[rows], dtype)
        else:
            state[key] = _decode_array(payload[key], payload.get(key + SCALE), ref, dtype)
    return state, touched
