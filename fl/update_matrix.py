"""Client updates as one matrix: a row per client, a column per float coordinate of the model.

Robust aggregation and DP both work on update *deltas* (client weights minus global weights),
flattened over every float array of the state in a fixed key order. A row-sparse update leaves
the rows it did not send at their global value, so its delta there is 0; :attr:`UpdateMatrix.sent`
records which coordinates each client actually sent, so that coordinate-wise statistics
(median, trimmed mean) are taken over the senders of a coordinate only, and the distances of Krum
are computed over the sent rows alone (:meth:`UpdateMatrix.sparse`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from fl.payload_format import DecodedUpdate, State

__all__ = ["UpdateMatrix", "apply_flat_delta", "flat_width", "float_keys"]


def float_keys(state: Mapping[str, np.ndarray]) -> list[str]:
    """The float arrays of ``state``, sorted: the columns of an :class:`UpdateMatrix`."""
    return sorted(k for k, v in state.items() if np.issubdtype(np.asarray(v).dtype, np.floating))


@dataclass
class UpdateMatrix:
    """``values[i]`` is client ``i``'s delta; ``sent[i, j]`` whether it sent coordinate ``j``
    (``None``: every client sent everything)."""

    values: np.ndarray
    sent: np.ndarray | None
    keys: list[str]
    shapes: list[tuple[int, ...]]

    @property
    def n_clients(self) -> int:
        return int(self.values.shape[0])

    @classmethod
    def from_updates(
        cls, global_state: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate]
    ) -> UpdateMatrix:
        """Deltas of decoded updates (``(state, touched)``, see :func:`fl.compression.decode_update`)."""
        if not updates:
            raise ValueError("an update matrix needs at least one update")
        keys = float_keys(global_state)
        shapes = [tuple(np.shape(global_state[k])) for k in keys]
        sizes = [int(np.prod(s)) for s in shapes]
        width = int(sum(sizes))
        values = np.empty((len(updates), width), dtype=np.float32)
        any_sparse = any(touched for _, touched in updates)
        sent = np.ones((len(updates), width), dtype=bool) if any_sparse else None
        for i, (state, touched) in enumerate(updates):
            offset = 0
            for key, shape, size in zip(keys, shapes, sizes, strict=True):
                ref = np.asarray(global_state[key], np.float32)
                if key in touched:  # the sent rows' values only; unsent rows have delta 0
                    rows = np.asarray(touched[key], dtype=np.int64)
                    delta = np.zeros(shape, np.float32)
                    delta[rows] = np.asarray(state[key], np.float32) - ref[rows]
                    mask = np.zeros(shape[0], dtype=bool)
                    mask[rows] = True
                    sent[i, offset : offset + size] = np.repeat(mask, size // shape[0])
                else:
                    delta = np.asarray(state[key], np.float32) - ref
                values[i, offset : offset + size] = delta.ravel()
                offset += size
        return cls(values, sent, keys, shapes)

    def sparse(self) -> sparse.csr_matrix:
        """The deltas over the coordinates each client sent (a CSR matrix)."""
        if self.sent is None:
            return sparse.csr_matrix(self.values)
        rows, cols = np.nonzero(self.sent)
        return sparse.csr_matrix(
            (self.values[rows, cols], (rows, cols)), shape=self.values.shape, dtype=np.float32
        )

    def masked(self) -> np.ndarray:
        """The deltas with NaN where a client sent nothing (for coordinate-wise statistics)."""
        if self.sent is None:
            return self.values
        return np.where(self.sent, self.values, np.float32(np.nan))

    def apply(self, global_state: Mapping[str, np.ndarray], delta: np.ndarray) -> State:
        """``global + delta`` as a state (see :func:`apply_flat_delta`)."""
        return apply_flat_delta(global_state, delta)


def flat_width(state: Mapping[str, np.ndarray]) -> int:
    """The number of float coordinates of ``state`` (the columns of an :class:`UpdateMatrix`)."""
    return int(sum(np.asarray(state[k]).size for k in float_keys(state)))


def apply_flat_delta(global_state: Mapping[str, np.ndarray], delta: np.ndarray) -> State:
    """``global + delta`` for a delta flattened like an :class:`UpdateMatrix` row, in the global
    dtypes (non-float arrays are copied unchanged)."""
    out: State = {k: np.array(v, copy=True) for k, v in global_state.items()}
    offset = 0
    for key in float_keys(global_state):
        base = np.asarray(global_state[key])
        step = np.asarray(delta[offset : offset + base.size], dtype=np.float64)
        out[key] = (base.astype(np.float64) + step.reshape(base.shape)).astype(base.dtype)
        offset += base.size
    if offset != len(delta):
        raise ValueError(f"a delta of {len(delta)} values does not fit a state of {offset}")
    return out
