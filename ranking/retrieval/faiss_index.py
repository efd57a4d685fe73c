"""The L1 index: maximum-inner-product search over item vectors with FAISS, keeping item ids.

:class:`FaissIndex` wraps any FAISS ``index_factory`` string built for the inner-product metric
over L2-normalised vectors (cosine similarity), keeps the caller's external item ids, and
guarantees that excluded ids never come back from :meth:`FaissIndex.search`.

Exclusion uses FAISS's own ``IDSelector`` + ``SearchParameters`` where the index type supports them
(so an approximate index still fills all ``k`` slots with allowed items) and falls back to
over-fetching and filtering where it does not; in both cases results are checked against the
exclusion list before they are returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ranking.errors import ConfigError, DataError
from ranking.retrieval.exclusion import ExcludeArg, compact, parse_exclude, search_overfetch
from ranking.retrieval.faiss_internals import (
    components,
    faiss_message,
    search_parameters,
    stored_ids,
    supports_ids,
)
from ranking.retrieval.index_files import metadata_path, read_index, write_index
from ranking.retrieval.vectors import as_ids, as_matrix, l2_normalise, positive_int

__all__ = ["FaissIndex"]

#: Exclusion lists up to this many ids per query (or up to ``k``, whichever is larger) are handled
#: by one batched, over-fetched search; longer per-query lists get one selector search per query.
_OVERFETCH_LIMIT = 256


class FaissIndex:
    """An inner-product FAISS index over (by default L2-normalised) item vectors with external ids.

    Parameters
    ----------
    dim:
        Vector dimension (supplied by the caller, e.g. the encoder's output size).
    factory:
        Any FAISS ``index_factory`` string, e.g. ``"Flat"``, ``"HNSW32"``, ``"IVF1024,PQ16"``.
        Index types that cannot store ids themselves (Flat, HNSW, PQ, ...) are wrapped in an
        ``IndexIDMap2`` so the ids given to :meth:`add` are the ids :meth:`search` returns.
    normalise:
        L2-normalise vectors on :meth:`train`/:meth:`add` and queries on :meth:`search`, so the
        inner product is the cosine similarity. Turn off for vectors that are already normalised
        (saves a copy) or for genuine maximum-inner-product search.
    ef_search:
        HNSW search breadth (``efSearch``); FAISS uses ``max(ef_search, k)``.
    ef_construction:
        HNSW build breadth (``efConstruction``); only used before the first :meth:`add`.
    nprobe:
        Number of inverted lists an IVF index visits per query.
    num_threads:
        If given, ``faiss.omp_set_num_threads(num_threads)`` (process-wide) at construction.

    Raises
    ------
    ConfigError
        For an unknown or unbuildable factory string or an invalid setting.
    """

    def __init__(
        self,
        dim: int,
        factory: str = "HNSW32",
        *,
        normalise: bool = True,
        ef_search: int = 128,
        ef_construction: int = 200,
        nprobe: int = 32,
        num_threads: int | None = None,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim <= 0:
            raise ConfigError(f"index dim must be a positive integer, got {dim!r}")
        if not isinstance(factory, str) or not factory.strip():
            raise ConfigError(f"index factory must be a non-empty string, got {factory!r}")
        try:
            index = faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ConfigError(
                f"cannot build FAISS index {factory!r} for dim {dim} with the inner-product metric: "
                f"{faiss_message(exc)}"
            ) from exc
        if not supports_ids(index):
            inner = index
            index = faiss.IndexIDMap2(inner)
            index.own_fields = True
            inner.this.disown()
        self._setup(
            index,
            factory=factory,
            normalise=normalise,
            ef_search=ef_search,
            ef_construction=ef_construction,
            nprobe=nprobe,
            num_threads=num_threads,
        )

    def _setup(
        self,
        index: faiss.Index,
        *,
        factory: str,
        normalise: bool,
        ef_search: int,
        ef_construction: int,
        nprobe: int,
        num_threads: int | None,
    ) -> None:
        self._index = index
        self._factory = factory
        self._normalise = bool(normalise)
        self._ids_sorted: np.ndarray | None = None if index.ntotal else np.empty(0, np.int64)
        self._selectors_ok = True
        if num_threads is not None:
            if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
                raise ConfigError(
                    f"num_threads must be a positive integer or null, got {num_threads!r}"
                )
            faiss.omp_set_num_threads(num_threads)
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.ef_construction = ef_construction

    # ------------------------------------------------------------------ properties

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._index.d)

    @property
    def factory(self) -> str:
        """The ``index_factory`` string this index was built from."""
        return self._factory

    @property
    def normalise(self) -> bool:
        """Whether vectors and queries are L2-normalised before use."""
        return self._normalise

    @property
    def index(self) -> faiss.Index:
        """The underlying FAISS index (an ``IndexIDMap2`` around the factory index where needed)."""
        return self._index

    @property
    def ntotal(self) -> int:
        """Number of stored vectors."""
        return int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        """Whether the index can accept vectors (always true for Flat and HNSW)."""
        return bool(self._index.is_trained)

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return (
            f"FaissIndex(dim={self.dim}, factory={self._factory!r}, ntotal={self.ntotal}, "
            f"normalise={self._normalise}, ef_search={self._ef_search}, nprobe={self._nprobe})"
        )

    @property
    def ef_search(self) -> int:
        """HNSW ``efSearch`` (ignored by index types without an HNSW graph)."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef_search = positive_int("ef_search", value)
        for comp in components(self._index, faiss.IndexHNSW):
            comp.hnsw.efSearch = self._ef_search

    @property
    def ef_construction(self) -> int:
        """HNSW ``efConstruction`` (ignored by index types without an HNSW graph)."""
        return self._ef_construction

    @ef_construction.setter
    def ef_construction(self, value: int) -> None:
        self._ef_construction = positive_int("ef_construction", value)
        for comp in components(self._index, faiss.IndexHNSW):
            comp.hnsw.efConstruction = self._ef_construction

    @property
    def nprobe(self) -> int:
        """IVF ``nprobe`` (ignored by index types without inverted lists)."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._nprobe = positive_int("nprobe", value)
        for comp in components(self._index, faiss.IndexIVF):
            comp.nprobe = self._nprobe

    # ------------------------------------------------------------------ building

    def _prepare(self, vectors: Any, what: str) -> np.ndarray:
        x = as_matrix(vectors, self.dim, what)
        return l2_normalise(x, what) if self._normalise and len(x) else x

    def train(self, vectors: Any) -> None:
        """Train the index (IVF centroids, PQ codebooks) on ``vectors``; a no-op if already trained."""
        if self._index.is_trained:
            return
        x = self._prepare(vectors, "training vectors")
        if len(x) == 0:
            raise DataError(f"index {self._factory!r} needs training vectors, got none")
        try:
            self._index.train(x)
        except RuntimeError as exc:
            raise DataError(
                f"training index {self._factory!r} on {len(x)} vectors failed: {faiss_message(exc)}"
            ) from exc

    def add(self, vectors: Any, ids: Any = None) -> np.ndarray:
        """Add ``vectors`` under ``ids`` (default: the next free ids) and return the ids used.

        Items can be added at any time after the first build; they are searchable immediately.
        Ids must be non-negative, unique, and not already in the index.
        """
        if not self._index.is_trained:
            raise DataError(
                f"index {self._factory!r} is not trained: call train() or build() first"
            )
        x = self._prepare(vectors, "vectors")
        existing = self._known_ids()
        if ids is None:
            start = int(existing[-1]) + 1 if existing.size else 0
            new_ids = np.arange(start, start + len(x), dtype=np.int64)
        else:
            new_ids = as_ids(ids, len(x))
            uniq, counts = np.unique(new_ids, return_counts=True)
            if uniq.size != new_ids.size:
                raise DataError(f"ids contain duplicates, e.g. {uniq[counts > 1][:5].tolist()}")
            clash = uniq[np.isin(uniq, existing, assume_unique=True)]
            if clash.size:
                raise DataError(
                    f"{clash.size} ids are already in the index (first: {clash[:5].tolist()}); "
                    "ids must be new"
                )
        if len(x) == 0:
            return new_ids
        try:
            self._index.add_with_ids(x, new_ids)
        except RuntimeError as exc:
            raise DataError(
                f"adding to index {self._factory!r} failed: {faiss_message(exc)}"
            ) from exc
        self._ids_sorted = np.union1d(existing, new_ids)
        return new_ids

    def build(self, vectors: Any, ids: Any = None) -> FaissIndex:
        """:meth:`train` (if needed) then :meth:`add`; returns ``self``."""
        self.train(vectors)
        self.add(vectors, ids)
        return self

    def _known_ids(self) -> np.ndarray:
        if self._ids_sorted is None:
            self._ids_sorted = np.unique(stored_ids(self._index))
        return self._ids_sorted

    def ids(self) -> np.ndarray:
        """The stored item ids, sorted."""
        return self._known_ids().copy()

    # ------------------------------------------------------------------ search

    def search(
        self, queries: Any, k: int, exclude: ExcludeArg = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` stored items with the highest inner product with each query.

        Parameters
        ----------
        queries:
            ``[B, dim]`` array (or one ``[dim]`` vector, treated as ``B = 1``).
        k:
            Number of results per query.
        exclude:
            Item ids that must never be returned: one 1-D array applied to every query, or one
            array per query (a sequence of ``B`` 1-D arrays, or a ``[B, m]`` array padded with
            negative values). Ids not in the index are ignored.

        Returns
        -------
        scores, ids:
            ``[B, k]`` float32 scores in decreasing order and the matching int64 item ids. A row
            holds ``-1`` ids with ``-inf`` scores only where fewer than ``k`` allowed items
            were found.
        """
        k = positive_int("k", k)
        if not self._index.is_trained:
            raise DataError(f"index {self._factory!r} is not trained: call train() and add() first")
        if self._index.ntotal == 0:
            raise DataError(f"index {self._factory!r} is empty: add() vectors before searching")
        q = self._prepare(queries, "queries")
        if len(q) == 0:
            return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
        excl = parse_exclude(exclude, len(q))
        if isinstance(excl, list):
            longest = max(e.size for e in excl)
            if longest <= max(k, _OVERFETCH_LIMIT) or not self._selectors_ok:
                return search_overfetch(self._index, self._known_ids(), q, k, excl)
            # Long per-query lists: one selector search per query beats fetching k + longest.
            out_s = np.empty((len(q), k), np.float32)
            out_i = np.empty((len(q), k), np.int64)
            for row, ex in enumerate(excl):
                s, i = self._search_excluding(q[row : row + 1], k, ex)
                out_s[row], out_i[row] = s[0], i[0]
            return out_s, out_i
        return self._search_excluding(q, k, excl)

    def _search_excluding(
        self, q: np.ndarray, k: int, excl: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search all of ``q`` with one exclusion set (``None`` or empty: no exclusion)."""
        if excl is None or excl.size == 0:
            scores, ids = self._index.search(q, k)
            scores[ids < 0] = -np.inf
            return scores, ids
        if self._selectors_ok:
            batch = faiss.IDSelectorBatch(excl)
            sel = faiss.IDSelectorNot(batch)
            keep: list[Any] = [batch, sel]
            try:
                params = search_parameters(
                    self._index, sel, keep, ef_search=self._ef_search, nprobe=self._nprobe
                )
                scores, ids = self._index.search(q, k, params=params)
            except RuntimeError:
                self._selectors_ok = False  # this index type ignores/refuses selectors
            else:
                leaked = np.isin(ids, excl)
                if not leaked.any():
                    return compact(scores, ids, leaked, k)
                self._selectors_ok = False
        return search_overfetch(self._index, self._known_ids(), q, k, excl)

    # ------------------------------------------------------------------ persistence

    @staticmethod
    def metadata_path(path: str | Path) -> Path:
        """The JSON sidecar stored next to the index file ``path``."""
        return metadata_path(path)

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (FAISS format) and its settings to ``<path>.json``, atomically.

        Each file is written to a temporary file in the same directory and renamed into place, so
        a failed save never leaves a partial file behind.
        """
        settings: dict[str, Any] = {
            "factory": self._factory,
            "dim": self.dim,
            "metric": "inner_product",
            "normalise": self._normalise,
            "ef_search": self._ef_search,
            "ef_construction": self._ef_construction,
            "nprobe": self._nprobe,
            "ntotal": self.ntotal,
        }
        write_index(self._index, settings, path)

    @classmethod
    def load(cls, path: str | Path, *, num_threads: int | None = None) -> FaissIndex:
        """Read an index written by :meth:`save`.

        Raises
        ------
        DataError
            If the index file or its ``.json`` sidecar is missing, unreadable or inconsistent.
        """
        index, meta = read_index(path)
        obj = cls.__new__(cls)
        obj._setup(
            index,
            factory=str(meta["factory"]),
            normalise=bool(meta["normalise"]),
            ef_search=int(meta.get("ef_search", 128)),
            ef_construction=int(meta.get("ef_construction", 200)),
            nprobe=int(meta.get("nprobe", 32)),
            num_threads=num_threads,
        )
        return obj
