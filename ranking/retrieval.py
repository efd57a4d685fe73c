"""L1 candidate retrieval: maximum-inner-product search over item vectors with FAISS.

:class:`FaissIndex` wraps any FAISS ``index_factory`` string (``"Flat"``, ``"HNSW32"``,
``"IVF1024,PQ16"``, ...) built for the inner-product metric over L2-normalised vectors (cosine
similarity), keeps the caller's external item ids, and guarantees that excluded ids (items the user
has already seen, unavailable or blocked items) never come back from :meth:`FaissIndex.search`.

Exclusion uses FAISS's own ``IDSelector`` + ``SearchParameters`` where the index type supports them
(so an approximate index still fills all ``k`` slots with allowed items) and falls back to
over-fetching and filtering where it does not; in both cases results are checked against the
exclusion list before they are returned.

:func:`exact_topk` and :func:`recall_at_k` give the brute-force ground truth and the recall of an
approximate index against it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ranking.errors import ConfigError, DataError
from ranking.storage import atomic_path, atomic_write_text

FORMAT_VERSION = 1

#: Exclusion lists up to this many ids per query (or up to ``k``, whichever is larger) are handled
#: by one batched, over-fetched search; longer per-query lists get one selector search per query.
_OVERFETCH_LIMIT = 256

ExcludeArg = Sequence[np.ndarray] | np.ndarray | None


def _faiss_message(exc: BaseException) -> str:
    """The useful tail of a FAISS C++ exception (which starts with a long source location)."""
    text = str(exc).strip()
    marker = "Error: "
    if marker in text:
        text = text[text.rindex(marker) + len(marker) :]
    return text.splitlines()[-1] if text else type(exc).__name__


def _components(index: faiss.Index) -> list[Any]:
    """``index`` and every index nested inside it (ID maps, pre-transforms, refine), downcast."""
    out: list[Any] = []
    stack = [index]
    while stack:
        idx = faiss.downcast_index(stack.pop())
        out.append(idx)
        if isinstance(idx, faiss.IndexIDMap | faiss.IndexPreTransform):
            stack.append(idx.index)
        elif isinstance(idx, faiss.IndexRefine):
            stack.append(idx.base_index)
    return out


def _supports_ids(index: faiss.Index) -> bool:
    """Whether ``index.add_with_ids`` works without an ``IndexIDMap2`` around it."""
    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexIDMap | faiss.IndexIVF):
        return True
    if isinstance(idx, faiss.IndexPreTransform):
        return _supports_ids(idx.index)
    return False


def _stored_ids(index: faiss.Index) -> np.ndarray:
    """The external ids held by ``index`` (unsorted)."""
    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexIDMap):
        return faiss.vector_to_array(idx.id_map).astype(np.int64, copy=False)
    if isinstance(idx, faiss.IndexPreTransform):
        return _stored_ids(idx.index)
    if isinstance(idx, faiss.IndexIVF):
        invlists = idx.invlists
        chunks = []
        for list_no in range(idx.nlist):
            size = invlists.list_size(list_no)
            if size:
                ptr = invlists.get_ids(list_no)
                chunks.append(faiss.rev_swig_ptr(ptr, size).copy())
                invlists.release_ids(list_no, ptr)
        return np.concatenate(chunks).astype(np.int64) if chunks else np.empty(0, np.int64)
    return np.arange(idx.ntotal, dtype=np.int64)


def _as_matrix(x: Any, dim: int, what: str) -> np.ndarray:
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


def _as_ids(ids: Any, n: int) -> np.ndarray:
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


def _compact(
    scores: np.ndarray, ids: np.ndarray, drop: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first ``k`` entries of each row not marked in ``drop`` (in order), pad with -1/-inf."""
    drop = drop | (ids < 0)
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]
    ids = np.take_along_axis(ids, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    gone = np.take_along_axis(drop, order, axis=1)
    ids[gone] = -1
    scores[gone] = -np.inf
    if ids.shape[1] < k:
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return scores, ids


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
                f"{_faiss_message(exc)}"
            ) from exc
        if not _supports_ids(index):
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
        self._ef_search = self._positive("ef_search", value)
        for comp in _components(self._index):
            if isinstance(comp, faiss.IndexHNSW):
                comp.hnsw.efSearch = self._ef_search

    @property
    def ef_construction(self) -> int:
        """HNSW ``efConstruction`` (ignored by index types without an HNSW graph)."""
        return self._ef_construction

    @ef_construction.setter
    def ef_construction(self, value: int) -> None:
        self._ef_construction = self._positive("ef_construction", value)
        for comp in _components(self._index):
            if isinstance(comp, faiss.IndexHNSW):
                comp.hnsw.efConstruction = self._ef_construction

    @property
    def nprobe(self) -> int:
        """IVF ``nprobe`` (ignored by index types without inverted lists)."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._nprobe = self._positive("nprobe", value)
        for comp in _components(self._index):
            if isinstance(comp, faiss.IndexIVF):
                comp.nprobe = self._nprobe

    @staticmethod
    def _positive(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        return int(value)

    # ------------------------------------------------------------------ building

    def _prepare(self, vectors: Any, what: str) -> np.ndarray:
        x = _as_matrix(vectors, self.dim, what)
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
                f"training index {self._factory!r} on {len(x)} vectors failed: {_faiss_message(exc)}"
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
            new_ids = _as_ids(ids, len(x))
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
                f"adding to index {self._factory!r} failed: {_faiss_message(exc)}"
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
            self._ids_sorted = np.unique(_stored_ids(self._index))
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
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if not self._index.is_trained:
            raise DataError(f"index {self._factory!r} is not trained: call train() and add() first")
        if self._index.ntotal == 0:
            raise DataError(f"index {self._factory!r} is empty: add() vectors before searching")
        q = self._prepare(queries, "queries")
        if len(q) == 0:
            return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
        excl = self._parse_exclude(exclude, len(q))
        if isinstance(excl, list):
            longest = max(e.size for e in excl)
            if longest <= max(k, _OVERFETCH_LIMIT) or not self._selectors_ok:
                return self._search_overfetch(q, k, excl)
            # Long per-query lists: one selector search per query beats fetching k + longest.
            out_s = np.empty((len(q), k), np.float32)
            out_i = np.empty((len(q), k), np.int64)
            for row, ex in enumerate(excl):
                s, i = self._search_excluding(q[row : row + 1], k, ex)
                out_s[row], out_i[row] = s[0], i[0]
            return out_s, out_i
        return self._search_excluding(q, k, excl)

    @staticmethod
    def _parse_exclude(exclude: ExcludeArg, n_queries: int) -> np.ndarray | list[np.ndarray] | None:
        """``None``, one sorted global id array, or one sorted id array per query."""

        def clean(arr: Any, what: str) -> np.ndarray:
            a = np.asarray(arr)
            if a.size == 0:
                return np.empty(0, np.int64)
            if not np.issubdtype(a.dtype, np.integer):
                raise DataError(f"{what} must hold integer item ids, got dtype {a.dtype}")
            a = a.reshape(-1).astype(np.int64, copy=False)
            return np.unique(a[a >= 0])

        if exclude is None:
            return None
        if not isinstance(exclude, np.ndarray) and isinstance(exclude, Sequence) and not exclude:
            return None
        if isinstance(exclude, np.ndarray):
            if exclude.ndim <= 1:
                excl = clean(exclude, "exclude")
                return excl if excl.size else None
            if exclude.ndim == 2:
                if exclude.shape[0] != n_queries:
                    raise DataError(f"exclude has {exclude.shape[0]} rows for {n_queries} queries")
                rows = [clean(r, f"exclude[{i}]") for i, r in enumerate(exclude)]
                return rows if any(r.size for r in rows) else None
            raise DataError(f"exclude must be a 1-D or 2-D array, got shape {exclude.shape}")
        if isinstance(exclude, str | bytes) or not isinstance(exclude, Sequence):
            raise DataError(
                f"exclude must be an array or a sequence of per-query arrays, got {type(exclude).__name__}"
            )
        if len(exclude) and all(np.ndim(e) == 0 for e in exclude):
            excl = clean(np.asarray(exclude), "exclude")  # a plain list of ids: one global set
            return excl if excl.size else None
        if len(exclude) != n_queries:
            raise DataError(f"exclude has {len(exclude)} per-query lists for {n_queries} queries")
        rows = [clean(e, f"exclude[{i}]") for i, e in enumerate(exclude)]
        return rows if any(r.size for r in rows) else None

    def _search_params(self, index: faiss.Index, sel: Any, keep: list[Any]) -> Any:
        """FAISS search parameters for ``index`` carrying ``sel`` and this index's settings."""
        idx = faiss.downcast_index(index)
        if isinstance(idx, faiss.IndexIDMap):
            # The wrapped index sees internal ids: translate them to external ids for the selector
            # ourselves (the ID map only does this for a top-level ``params.sel``).
            translated = faiss.IDSelectorTranslated(idx.id_map, sel)
            keep.append(translated)
            return self._search_params(idx.index, translated, keep)
        if isinstance(idx, faiss.IndexPreTransform):
            params = faiss.SearchParametersPreTransform()
            params.index_params = self._search_params(idx.index, sel, keep)
        elif isinstance(idx, faiss.IndexRefine):
            params = faiss.IndexRefineSearchParameters()
            params.k_factor = idx.k_factor
            params.base_index_params = self._search_params(idx.base_index, sel, keep)
        elif isinstance(idx, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=self._ef_search)
        elif isinstance(idx, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(sel=sel, nprobe=self._nprobe)
        else:
            params = faiss.SearchParameters(sel=sel)
        keep.append(params)
        return params

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
                params = self._search_params(self._index, sel, keep)
                scores, ids = self._index.search(q, k, params=params)
            except RuntimeError:
                self._selectors_ok = False  # this index type ignores/refuses selectors
            else:
                leaked = np.isin(ids, excl)
                if not leaked.any():
                    return _compact(scores, ids, leaked, k)
                self._selectors_ok = False
        return self._search_overfetch(q, k, excl)

    def _search_overfetch(
        self, q: np.ndarray, k: int, excl: np.ndarray | list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search for ``k`` plus as many extra results as are excluded, then drop the excluded."""
        per_query = isinstance(excl, list)
        # Only excluded ids that are in the index can take a slot: fetch that many extra.
        known = self._known_ids()
        if per_query:
            longest = max(
                (int(np.isin(e, known, assume_unique=True).sum()) for e in excl), default=0
            )
        else:
            longest = int(np.isin(excl, known, assume_unique=True).sum())
        ntotal = self._index.ntotal
        fetch = min(k + longest, ntotal)
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_i = np.full((len(q), k), -1, np.int64)
        todo = np.arange(len(q))
        while todo.size:
            scores, ids = self._index.search(q[todo], fetch)
            if per_query:
                drop = np.stack([np.isin(ids[j], excl[row]) for j, row in enumerate(todo)])
            else:
                drop = np.isin(ids, excl)
            s, i = _compact(scores, ids, drop, k)
            out_s[todo], out_i[todo] = s, i
            # Rows still short although the index returned a full list may hold more allowed items
            # further down (approximate indexes can return fewer than asked); fetch deeper.
            short = (i < 0).any(axis=1) & (ids >= 0).all(axis=1)
            if fetch >= ntotal:
                break
            todo = todo[short]
            fetch = min(fetch * 2, ntotal)
        return out_s, out_i

    # ------------------------------------------------------------------ persistence

    @staticmethod
    def metadata_path(path: str | Path) -> Path:
        """The JSON sidecar stored next to the index file ``path``."""
        path = Path(path)
        return path.with_name(path.name + ".json")

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (FAISS format) and its settings to ``<path>.json``, atomically.

        Each file is written to a temporary file in the same directory and renamed into place, so
        a failed save never leaves a partial file behind.
        """
        path = Path(path)
        meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "factory": self._factory,
            "dim": self.dim,
            "metric": "inner_product",
            "normalise": self._normalise,
            "ef_search": self._ef_search,
            "ef_construction": self._ef_construction,
            "nprobe": self._nprobe,
            "ntotal": self.ntotal,
        }
        try:
            with atomic_path(path) as tmp:
                faiss.write_index(self._index, str(tmp))
                meta["index_bytes"] = tmp.stat().st_size
            atomic_write_text(self.metadata_path(path), json.dumps(meta, indent=2) + "\n")
        except (RuntimeError, OSError) as exc:
            msg = _faiss_message(exc) if isinstance(exc, RuntimeError) else str(exc)
            raise DataError(f"could not save the index ({msg})", path=path) from exc

    @classmethod
    def load(cls, path: str | Path, *, num_threads: int | None = None) -> FaissIndex:
        """Read an index written by :meth:`save`.

        Raises
        ------
        DataError
            If the index file or its ``.json`` sidecar is missing, unreadable or inconsistent.
        """
        path = Path(path)
        meta_path = cls.metadata_path(path)
        if not path.is_file():
            raise DataError("index file does not exist", path=path)
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError as exc:
            raise DataError("index metadata sidecar does not exist", path=meta_path) from exc
        except (OSError, ValueError) as exc:
            raise DataError(f"index metadata is not valid JSON ({exc})", path=meta_path) from exc
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            version = meta.get("format_version") if isinstance(meta, dict) else None
            raise DataError(
                f"index metadata format {version!r} != {FORMAT_VERSION}", path=meta_path
            )
        missing = {"factory", "dim", "normalise", "ntotal", "index_bytes"} - set(meta)
        if missing:
            raise DataError(f"index metadata lacks {sorted(missing)}", path=meta_path)
        size = os.path.getsize(path)
        if size != meta["index_bytes"]:
            raise DataError(
                f"index file has {size} bytes but its metadata says {meta['index_bytes']} "
                "(truncated, or not the file the metadata was written with)",
                path=path,
            )
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise DataError(
                f"not a readable FAISS index ({_faiss_message(exc)})", path=path
            ) from exc
        if index.d != meta["dim"] or index.ntotal != meta["ntotal"]:
            raise DataError(
                f"index holds {index.ntotal} vectors of dim {index.d}, metadata says "
                f"{meta['ntotal']} of dim {meta['dim']}",
                path=path,
            )
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise DataError("index does not use the inner-product metric", path=path)
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


# ---------------------------------------------------------------------- ground truth


def exact_topk(
    vectors: Any, queries: Any, k: int, *, ids: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``k`` by inner product (no normalisation: pass normalised vectors for cosine).

    Returns ``[B, k]`` scores and positions into ``vectors`` (or ``ids[position]`` if ``ids`` is
    given), padded with ``-1``/``-inf`` when ``k`` exceeds the number of vectors.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    xb = np.asarray(vectors, dtype=np.float32)
    if xb.ndim != 2 or xb.shape[0] == 0:
        raise DataError(f"vectors must be a non-empty 2-D array, got shape {xb.shape}")
    xq = _as_matrix(queries, xb.shape[1], "queries")
    xb = _as_matrix(xb, xb.shape[1], "vectors")
    kk = min(int(k), xb.shape[0])
    scores, pos = faiss.knn(xq, xb, kk, metric=faiss.METRIC_INNER_PRODUCT)
    scores, pos = _compact(scores, pos, np.zeros(pos.shape, bool), int(k))
    if ids is not None:
        id_arr = _as_ids(ids, xb.shape[0])
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
