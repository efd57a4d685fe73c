"""Server-side checks of client updates, norm clipping and simulated malicious clients.

:func:`check_update` accepts either a plain state (``dict[str, np.ndarray]`` with the reference's
keys) or a payload laid out as :mod:`fl.payload_format` describes (row-sparse and/or quantised
entries, written by :func:`fl.compression.encode_update`) and raises :class:`RejectedUpdate`,
naming the offending array, when the update cannot be trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from encoders.errors import ConfigError, TandemError
from fl.payload_format import ROWS, SCALE, SEP, VALUES

__all__ = [
    "RejectedUpdate",
    "apply_delta",
    "byzantine",
    "check_update",
    "clip_by_norm",
    "global_norm",
    "state_delta",
]


class RejectedUpdate(TandemError):
    """A client update that failed validation.

    Attributes
    ----------
    key:
        Name of the offending array (``None`` when the problem is not tied to one array).
    reason:
        What was wrong.
    """

    def __init__(self, reason: str, *, key: str | None = None) -> None:
        self.key = key
        self.reason = reason
        where = f"array {key!r}: " if key is not None else ""
        super().__init__(f"rejected update: {where}{reason}")


def _check_finite(key: str, x: np.ndarray) -> None:
    if np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating):
        bad = ~np.isfinite(x)
        if bad.any():
            n_nan = int(np.isnan(x).sum())
            n_inf = int(bad.sum()) - n_nan
            kinds = ", ".join(part for part, n in (("NaN", n_nan), ("Inf", n_inf)) if n)
            raise RejectedUpdate(
                f"contains non-finite values ({kinds}: {int(bad.sum())} of {x.size})", key=key
            )


def _check_values(
    key: str,
    x: np.ndarray,
    ref_dtype: np.dtype,
    shape: tuple[int, ...],
    payload: Mapping[str, np.ndarray],
    scale_key: str,
) -> None:
    """Dtype, shape, finiteness and (for int8) the scale of one sent array."""
    if x.shape != shape:
        raise RejectedUpdate(f"has shape {x.shape}, expected {shape}", key=key)
    ref_float = np.issubdtype(ref_dtype, np.floating)
    if scale_key in payload:
        if not ref_float or x.dtype != np.int8:
            raise RejectedUpdate(
                f"has a scale array {scale_key!r} but dtype {x.dtype} (int8 expected for a "
                f"{ref_dtype} array)",
                key=key,
            )
        scale = np.asarray(payload[scale_key])
        want = (shape[0],) if len(shape) >= 2 else (1,)
        if scale.shape != want:
            raise RejectedUpdate(f"has shape {scale.shape}, expected {want}", key=scale_key)
        if not np.issubdtype(scale.dtype, np.floating):
            raise RejectedUpdate(f"has dtype {scale.dtype}, expected float32", key=scale_key)
        _check_finite(scale_key, scale)
        if np.any(scale < 0):
            raise RejectedUpdate("has negative scales", key=scale_key)
        if np.any(x == -128):
            raise RejectedUpdate("holds -128, outside the symmetric int8 range", key=key)
        return
    allowed = {ref_dtype}
    if ref_float:
        allowed.add(np.dtype(np.float16))
    if x.dtype not in allowed:
        expected = " or ".join(sorted(str(d) for d in allowed))
        raise RejectedUpdate(f"has dtype {x.dtype}, expected {expected}", key=key)
    _check_finite(key, x)


def check_update(
    update: Mapping[str, np.ndarray],
    reference_state: Mapping[str, np.ndarray],
) -> None:
    """Reject a malformed or poisoned update.

    Parameters
    ----------
    update:
        A plain state or an encoded payload (:func:`fl.compression.encode_update`).
    reference_state:
        The global state the update refers to (keys, shapes and dtypes).

    Raises
    ------
    RejectedUpdate
        On a missing or unexpected key, a wrong shape or dtype, NaN or Inf values, row indices out
        of range or duplicated, or a malformed quantisation scale. The message names the array.
    """
    if not isinstance(update, Mapping):
        raise RejectedUpdate(f"expected a mapping of named arrays, got {type(update).__name__}")
    expected: set[str] = set()
    for key, ref_value in reference_state.items():
        ref = np.asarray(ref_value)
        rows_key, values_key, scale_key = key + ROWS, key + VALUES, key + SCALE
        if rows_key in update:
            if ref.ndim < 1:
                raise RejectedUpdate("is sent row-sparse but is a scalar", key=key)
            if key in update:
                raise RejectedUpdate(f"is sent both dense and row-sparse ({rows_key!r})", key=key)
            if values_key not in update:
                raise RejectedUpdate(f"is missing (needed with {rows_key!r})", key=values_key)
            rows = np.asarray(update[rows_key])
            if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
                raise RejectedUpdate(
                    f"must be a 1-D integer array, got {rows.dtype} of shape {rows.shape}",
                    key=rows_key,
                )
            if len(rows) and (rows.min() < 0 or rows.max() >= ref.shape[0]):
                raise RejectedUpdate(
                    f"has row indices outside 0..{ref.shape[0] - 1} "
                    f"(min {int(rows.min())}, max {int(rows.max())})",
                    key=rows_key,
                )
            if len(np.unique(rows)) != len(rows):
                raise RejectedUpdate("has duplicated row indices", key=rows_key)
            values = np.asarray(update[values_key])
            _check_values(
                values_key, values, ref.dtype, (len(rows),) + ref.shape[1:], update, scale_key
            )
            expected.update((rows_key, values_key))
        else:
            if key not in update:
                raise RejectedUpdate("is missing", key=key)
            _check_values(key, np.asarray(update[key]), ref.dtype, ref.shape, update, scale_key)
            expected.add(key)
        if scale_key in update:
            expected.add(scale_key)
    extra = sorted(set(update) - expected)
    if extra:
        listed = ", ".join(repr(k) for k in extra[:5]) + (" ..." if len(extra) > 5 else "")
        bad_key = extra[0]
        hint = " (separator keys must follow a reference key)" if SEP in bad_key else ""
        raise RejectedUpdate(f"unexpected array(s) {listed}{hint}", key=bad_key)


# --------------------------------------------------------------------------------------------
# Deltas, clipping and malicious clients
# --------------------------------------------------------------------------------------------


def _is_float(x: np.ndarray) -> bool:
    return np.issubdtype(x.dtype, np.floating)


def state_delta(
    new_state: Mapping[str, np.ndarray], old_state: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """``new - old`` for every float array (other arrays are copied from ``new_state``)."""
    out: dict[str, np.ndarray] = {}
    for key, new in new_state.items():
        new = np.asarray(new)
        if key not in old_state:
            raise KeyError(f"array {key!r} is missing from the old state")
        out[key] = new - np.asarray(old_state[key]) if _is_float(new) else new.copy()
    return out


def apply_delta(
    base_state: Mapping[str, np.ndarray], delta_state: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """``base + delta`` for every float array, in the base dtype (other arrays from ``delta_state``)."""
    out: dict[str, np.ndarray] = {}
    for key, base in base_state.items():
        base = np.asarray(base)
        if key not in delta_state:
            raise KeyError(f"array {key!r} is missing from the delta")
        delta = np.asarray(delta_state[key])
        out[key] = (base + delta).astype(base.dtype) if _is_float(base) else delta.copy()
    return out


def global_norm(delta_state: Mapping[str, np.ndarray]) -> float:
    """The L2 norm of all float arrays of ``delta_state`` taken together."""
    total = 0.0
    for x in delta_state.values():
        x = np.asarray(x)
        if _is_float(x):
            x64 = x.astype(np.float64)
            total += float(np.dot(x64.ravel(), x64.ravel()))
    return float(np.sqrt(total))


def clip_by_norm(delta_state: Mapping[str, np.ndarray], max_norm: float) -> dict[str, np.ndarray]:
    """Scale an update delta so that its global L2 norm is at most ``max_norm``.

    Float arrays are multiplied by ``min(1, max_norm / norm)`` (keeping their dtype); other arrays
    are copied unchanged. A delta that already fits is returned as a copy.
    """
    max_norm = float(max_norm)
    if not (np.isfinite(max_norm) and max_norm > 0):
        raise ConfigError(f"max_norm must be a positive finite number, got {max_norm!r}")
    norm = global_norm(delta_state)
    factor = 1.0 if norm <= max_norm else max_norm / norm
    out: dict[str, np.ndarray] = {}
    for key, x in delta_state.items():
        x = np.asarray(x)
        out[key] = (
            (x.astype(np.float64) * factor).astype(x.dtype)
            if _is_float(x) and factor != 1.0
            else x.copy()
        )
    return out


BYZANTINE_MODES: tuple[str, ...] = ("scale", "signflip")


def byzantine(
    delta_state: Mapping[str, np.ndarray],
    mode: Literal["scale", "signflip"],
    factor: float = 1.0,
) -> dict[str, np.ndarray]:
    """Corrupt an update delta the way a malicious client would.

    Parameters
    ----------
    delta_state:
        The honest update delta.
    mode:
        ``"scale"``: multiply by ``factor`` (model-replacement / boosting attack);
        ``"signflip"``: multiply by ``-factor`` (``factor=1`` sends exactly the negated delta).
    factor:
        Magnitude of the attack.

    Returns
    -------
    dict[str, numpy.ndarray]
        The corrupted delta (float arrays only are changed; dtypes are kept).
    """
    if mode not in BYZANTINE_MODES:
        raise ConfigError(f"byzantine mode must be one of {BYZANTINE_MODES}, got {mode!r}")
    factor = float(factor)
    if not np.isfinite(factor):
        raise ConfigError(f"byzantine factor must be finite, got {factor!r}")
    mult = factor if mode == "scale" else -factor
    out: dict[str, np.ndarray] = {}
    for key, x in delta_state.items():
        x = np.asarray(x)
        out[key] = (x * mult).astype(x.dtype) if _is_float(x) else x.copy()
    return out
