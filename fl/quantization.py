"""Symmetric int8 quantisation of float arrays, and the quantisation modes of an update.

``"fp16"`` casts to ``float16``; ``"int8"`` stores ``q = round(x / s)`` with the symmetric scale
``s = max|x| / 127`` so that ``|x - q * s| <= s / 2``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["QUANTIZE_MODES", "Quantize", "dequantize_int8", "quantize_int8"]

Quantize = Literal["none", "fp16", "int8"]
QUANTIZE_MODES: tuple[str, ...] = ("none", "fp16", "int8")


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
