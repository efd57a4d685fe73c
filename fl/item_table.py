"""The item table's start and whether clients train it (``fl.item-table-init``,
``fl.freeze-item-table``).

**Content initialisation.** Round 0's item table can start from public content vectors (text or
image embeddings of the catalog, e.g. CLIP's, saved with ``numpy.save`` as ``[n_items, C]``):
they are centred, projected on their top ``D`` principal components (``D`` = the table's width;
with ``C < D`` the remaining columns start at 0) and scaled so that the mean row norm is 1, the
scale of the random initialisation. Items with similar content then start close together.

**Freezing.** With ``fl.freeze-item-table`` the clients train everything but the item table and
send none of its rows, and the server keeps it at round 0's value whatever an update carries.
Under DP this takes the ``n_items x D`` table out of the private release, so the noise lands only
on the layers every client moves (:mod:`fl.round_aggregation`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fl.payload_format import DecodedUpdate, State
from fl.task import EMBEDDING_KEYS
from ranking.errors import ConfigError

__all__ = [
    "FROZEN_KEYS",
    "content_table",
    "load_content_vectors",
    "with_content_item_table",
    "without_frozen_changes",
]

FROZEN_KEYS = EMBEDDING_KEYS
"""The arrays ``fl.freeze-item-table`` keeps fixed: the item ID table."""


def load_content_vectors(
    path: Path, n_items: int, setting: str = "fl.item_table_init"
) -> np.ndarray:
    """``[n_items, C]`` finite content vectors from a ``.npy`` file (a clear error otherwise,
    naming ``setting`` and the file)."""
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{setting}={path}: cannot read a .npy array ({exc})") from exc
    if vectors.ndim != 2 or vectors.shape[0] != n_items or vectors.shape[1] < 1:
        raise ConfigError(
            f"{setting}={path}: expected content vectors of shape [n_items={n_items}, C], "
            f"got {list(vectors.shape)}"
        )
    if not np.issubdtype(vectors.dtype, np.number) or not np.isfinite(vectors).all():
        raise ConfigError(f"{setting}={path}: the vectors must be finite numbers")
    return vectors.astype(np.float64)


def content_table(vectors: np.ndarray, dim: int) -> np.ndarray:
    """``[n_items, dim]``: the centred vectors on their top principal components, mean row norm 1."""
    centred = vectors - vectors.mean(axis=0)
    # torch's LAPACK, not numpy's: numpy's multithreaded OpenBLAS SVD hung (spinning) in the
    # ServerApp thread of the second simulation of one process
    _, _, vh = torch.linalg.svd(torch.from_numpy(centred), full_matrices=False)
    components = vh.numpy()
    kept = min(dim, components.shape[0])
    table = np.zeros((len(vectors), dim))
    table[:, :kept] = centred @ components[:kept].T
    mean_norm = float(np.linalg.norm(table, axis=1).mean())
    if mean_norm <= 0:
        raise ConfigError(
            "fl.item_table_init: every content vector is the same; nothing to start from"
        )
    return table / mean_norm


def with_content_item_table(state: State, path: Path) -> State:
    """``state`` with the item table's item rows (row 0 is padding) started from ``path``."""
    (key,) = EMBEDDING_KEYS
    table = np.array(state[key], copy=True)
    vectors = load_content_vectors(path, table.shape[0] - 1)
    table[1:] = content_table(vectors, table.shape[1]).astype(table.dtype)
    return {**state, key: table}


def without_frozen_changes(global_state: State, update: DecodedUpdate) -> DecodedUpdate:
    """``update`` with every frozen array back at its global value: a dense one is replaced by the
    global array, a row-sparse one (values of the sent rows only) sends no rows."""
    state, touched = update
    state, touched = dict(state), dict(touched)
    for key in FROZEN_KEYS:
        if key in touched:
            touched[key] = np.empty(0, dtype=np.int64)
            state[key] = np.asarray(global_state[key])[:0]
        elif key in state:
            state[key] = global_state[key]
    return state, touched
