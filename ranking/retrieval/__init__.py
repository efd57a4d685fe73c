"""L1 candidate retrieval: maximum-inner-product search over item vectors with FAISS.

:class:`FaissIndex` wraps any FAISS ``index_factory`` string (``"Flat"``, ``"HNSW32"``,
``"IVF1024,PQ16"``, ...) built for the inner-product metric over L2-normalised vectors (cosine
similarity), keeps the caller's external item ids, and guarantees that excluded ids (items the user
has already seen, unavailable or blocked items) never come back from :meth:`FaissIndex.search`.
:func:`exact_topk` and :func:`recall_at_k` give the brute-force ground truth and the recall of an
approximate index against it.

Modules
-------
* :mod:`ranking.retrieval.faiss_index`: :class:`FaissIndex`;
* :mod:`ranking.retrieval.exclusion`: exclusion lists and the over-fetching search;
* :mod:`ranking.retrieval.faiss_internals`: walking nested FAISS indexes;
* :mod:`ranking.retrieval.index_files`: the index file and its JSON sidecar;
* :mod:`ranking.retrieval.vectors`: checking vectors and ids, :func:`l2_normalise`;
* :mod:`ranking.retrieval.ground_truth`: :func:`exact_topk`, :func:`recall_at_k`.

The public names are re-exported here; the Hydra configs in ``conf/index/`` name
``ranking.retrieval.FaissIndex``.
"""

from ranking.retrieval.faiss_index import FaissIndex
from ranking.retrieval.ground_truth import exact_topk, recall_at_k
from ranking.retrieval.vectors import l2_normalise

__all__ = ["FaissIndex", "exact_topk", "l2_normalise", "recall_at_k"]
