"""Looking inside FAISS indexes: nested components, stored ids, search parameters, error text.

FAISS indexes nest (an ``IndexIDMap2`` around an HNSW graph, a pre-transform around an IVF
index, a refine stage around a base index). These helpers walk that nesting so that
:class:`~ranking.retrieval.faiss_index.FaissIndex` can set search settings, read back its ids and
pass an id selector down to the index that applies it.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

__all__ = ["components", "faiss_message", "search_parameters", "stored_ids", "supports_ids"]


def faiss_message(exc: BaseException) -> str:
    """The useful tail of a FAISS C++ exception (which starts with a long source location)."""
    text = str(exc).strip()
    marker = "Error: "
    if marker in text:
        text = text[text.rindex(marker) + len(marker) :]
    return text.splitlines()[-1] if text else type(exc).__name__


def components(index: faiss.Index, kind: type | None = None) -> list[Any]:
    """``index`` and every index nested inside it (ID maps, pre-transforms, refine), downcast.

    With ``kind``, only the components that are instances of it.
    """
    out: list[Any] = []
    stack = [index]
    while stack:
        idx = faiss.downcast_index(stack.pop())
        out.append(idx)
        if isinstance(idx, faiss.IndexIDMap | faiss.IndexPreTransform):
            stack.append(idx.index)
        elif isinstance(idx, faiss.IndexRefine):
            stack.append(idx.base_index)
    return out if kind is None else [idx for idx in out if isinstance(idx, kind)]


def supports_ids(index: faiss.Index) -> bool:
    """Whether ``index.add_with_ids`` works without an ``IndexIDMap2`` around it."""
    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexIDMap | faiss.IndexIVF):
        return True
    if isinstance(idx, faiss.IndexPreTransform):
        return supports_ids(idx.index)
    return False


def stored_ids(index: faiss.Index) -> np.ndarray:
    """The external ids held by ``index`` (unsorted)."""
    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexIDMap):
        return faiss.vector_to_array(idx.id_map).astype(np.int64, copy=False)
    if isinstance(idx, faiss.IndexPreTransform):
        return stored_ids(idx.index)
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


def search_parameters(
    index: faiss.Index, sel: Any, keep: list[Any], *, ef_search: int, nprobe: int
) -> Any:
    """FAISS search parameters for ``index`` carrying the id selector ``sel`` and the settings.

    Every FAISS object created on the way is appended to ``keep``: the caller holds them until the
    search is done (the parameters only point to them).
    """
    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexIDMap):
        # The wrapped index sees internal ids: translate them to external ids for the selector
        # ourselves (the ID map only does this for a top-level ``params.sel``).
        translated = faiss.IDSelectorTranslated(idx.id_map, sel)
        keep.append(translated)
        return search_parameters(idx.index, translated, keep, ef_search=ef_search, nprobe=nprobe)
    if isinstance(idx, faiss.IndexPreTransform):
        params = faiss.SearchParametersPreTransform()
        params.index_params = search_parameters(
            idx.index, sel, keep, ef_search=ef_search, nprobe=nprobe
        )
    elif isinstance(idx, faiss.IndexRefine):
        params = faiss.IndexRefineSearchParameters()
        params.k_factor = idx.k_factor
        params.base_index_params = search_parameters(
            idx.base_index, sel, keep, ef_search=ef_search, nprobe=nprobe
        )
    elif isinstance(idx, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=ef_search)
    elif isinstance(idx, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
    else:
        params = faiss.SearchParameters(sel=sel)
    keep.append(params)
    return params
