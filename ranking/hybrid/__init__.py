"""Hybrid re-rankers: the third pipeline stage, combining the L2 scores with business rules.

A re-ranker answers **one request**: the L1 candidates (``int64 [n]``, ``-1`` padding), their L2
scores (``float32 [n]``, ``-inf`` on padding) and a :class:`~ranking.rules.RerankContext` for the
request (catalog arrays, the user's history, ``k``); it returns a :class:`~ranking.hybrid.Reranked`
top-K with an explanation of every item. Every re-ranker runs the same stages:

1. the **filters** remove candidates (each removal is recorded with its rule);
2. the survivors get a **score** (the part that differs between re-rankers) and are sorted, ties
   going to the better L1 rank;
3. **pins, caps and the diversifier** build the top-K greedily (:func:`ranking.rules.select`).

=================  ==============================================================================
name               score of a candidate
=================  ==============================================================================
``neural``         L2 score; takes no rules (the baseline).
``rules``          sum of weighted boosts (no L2); ties, and no boosts at all, keep the L1 order.
``blend``          ``weights.l2 * normalised L2 + sum of weighted boosts``.
``cascade``        only the L2 top ``top_n`` are kept; among them, the sum of weighted boosts
                   (ties keep the L2 order).
``constrained``    L2 score; only filters, caps and pins allowed.
=================  ==============================================================================

Call one per request::

    context = RerankContext.from_catalog(catalog, popularity=counts, item_vectors=vectors)  # once
    reranker = build_reranker({"name": "blend", "weights": {"l2": 1, "popularity": 0.2}})
    result = reranker(candidates[0], l2_scores[0], context.for_request(history, k=10))
    result.items, result.explain(int(result.items[0])), result.report()

Build one from a spec (the same mapping Hydra's ``conf/reranker/*.yaml`` holds, a bundle carries
and a checkpoint stores) with :func:`build_reranker`; :meth:`Reranker.spec` gives it back.
Diversifiers take as relevance the final score, min-max normalised over the survivors (the score
order's ranks when every score is equal).
"""

from ranking.hybrid.base import NORMALISERS, Reranker, normalise_scores
from ranking.hybrid.reranked import CandidateTable, Reranked
from ranking.hybrid.rerankers import (
    RERANKERS,
    Cascade,
    Constrained,
    NeuralOnly,
    RulesOnly,
    WeightedBlend,
    build_reranker,
)
from ranking.rules import RULES, RerankContext, build_rule

__all__ = [
    "NORMALISERS",
    "RERANKERS",
    "RULES",
    "CandidateTable",
    "Cascade",
    "Constrained",
    "NeuralOnly",
    "RerankContext",
    "Reranked",
    "Reranker",
    "RulesOnly",
    "WeightedBlend",
    "build_reranker",
    "build_rule",
    "normalise_scores",
]
