"""The two-tier pipeline: L1 candidates from a FAISS-served retriever, re-ranked by an L2 model,
then (optionally) a hybrid re-ranker that applies business rules and explains each result.

One object serves both ways of using it:

* **evaluation**: :class:`TwoTierPipeline` is a scorer for :func:`ranking.evaluation.evaluate` —
  every item outside a session's L1 candidates scores ``-inf`` (so a target that L1 missed counts
  as a miss), candidates get the L2 score (or, without an L2 model, their L1 order);
* **serving**: :meth:`TwoTierPipeline.recommend` answers one session with the top-K items and the
  time each stage took.

The L1 side is anything with ``retrieve(histories, k, exclude_seen=...) -> int64 [B, k]`` (padded
with ``-1``), e.g. :class:`ranking.two_tower.TwoTowerRetriever`; the L2 side anything with
``score_candidates(histories, candidates) -> float32 [B, k]``, e.g.
:class:`ranking.recommender.SequenceRecommender` (loaded with :func:`ranking.recommender.load_recommender`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ranking.errors import ConfigError
from ranking.hybrid import Reranked, Reranker
from ranking.rules import RerankContext


class CandidateSource(Protocol):
    def retrieve(
        self, histories: list[np.ndarray], k: int, *, exclude_seen: bool = True
    ) -> np.ndarray: ...


class CandidateScorer(Protocol):
    def score_candidates(
        self, histories: list[np.ndarray], candidates: np.ndarray
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class Recommendation:
    """One answered request: the top-K item ids, what each stage took (milliseconds) and, with a
    re-ranker, why each item is there (its L1 rank, L2 score and every rule that acted)."""

    items: np.ndarray
    scores: np.ndarray
    l1_ms: float
    l2_ms: float
    rerank_ms: float = 0.0
    explanations: list[dict[str, Any]] = field(default_factory=list)
    reranked: Reranked | None = None

    @property
    def total_ms(self) -> float:
        return self.l1_ms + self.l2_ms + self.rerank_ms


class TwoTierPipeline:
    """L1 retrieval of ``n_candidates`` items, then L2 re-ranking of those candidates.

    ``l2=None`` gives the L1-only pipeline (candidates in L1 order), the baseline a two-tier system
    has to beat. ``exclude_seen`` drops the session's own items from the L1 candidates; it is off by
    default because repeat consumption is common (43% of the synthetic world's test targets are
    repeats) and the evaluator already removes seen items other than the target.
    """

    def __init__(
        self,
        l1: CandidateSource,
        l2: CandidateScorer | None,
        n_candidates: int = 100,
        *,
        exclude_seen: bool = False,
        reranker: Reranker | None = None,
        context: RerankContext | None = None,
        eval_k: int = 20,
    ) -> None:
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 1:
            raise ConfigError(f"n_candidates must be a positive integer, got {n_candidates!r}")
        if reranker is not None and context is None:
            raise ConfigError("a re-ranker needs a RerankContext (RerankContext.from_catalog(...))")
        self.l1 = l1
        self.l2 = l2
        self.n_candidates = n_candidates
        self.exclude_seen = exclude_seen
        self.reranker = reranker
        self.context = context
        self.eval_k = eval_k
        """List length the re-ranker produces when the pipeline is evaluated as a scorer."""

    def with_reranker(
        self, reranker: Reranker | None, context: RerankContext | None = None
    ) -> TwoTierPipeline:
        """The same L1 and L2 with another third stage (L1 and L2 are shared, not copied)."""
        return TwoTierPipeline(
            self.l1,
            self.l2,
            self.n_candidates,
            exclude_seen=self.exclude_seen,
            reranker=reranker,
            context=context or self.context,
            eval_k=self.eval_k,
        )

    def rerank(
        self, history: np.ndarray, candidates: np.ndarray, scores: np.ndarray, k: int
    ) -> Reranked:
        """The third stage for one request: rules and hybrids over its candidates."""
        assert self.reranker is not None and self.context is not None
        l2 = scores if self.l2 is not None else None
        return self.reranker(candidates, l2, self.context.for_request(history, k))

    def candidates(self, histories: list[np.ndarray]) -> np.ndarray:
        """``int64 [B, n_candidates]`` L1 candidates (``-1`` padded)."""
        ids = self.l1.retrieve(histories, self.n_candidates, exclude_seen=self.exclude_seen)
        return np.asarray(ids, dtype=np.int64)

    def rank_candidates(self, histories: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
        """``float32 [B, k]`` scores of the candidates: L2 scores, or descending L1 order."""
        if self.l2 is not None:
            return np.asarray(self.l2.score_candidates(histories, candidates), dtype=np.float32)
        order = np.broadcast_to(
            -np.arange(candidates.shape[1], dtype=np.float32), candidates.shape
        ).copy()
        order[candidates < 0] = -np.inf
        return order

    def score(self, histories: list[np.ndarray], users: np.ndarray) -> np.ndarray:
        """The evaluator's Scorer protocol: ``float32 [B, n_items]``, ``-inf`` outside the candidates."""
        candidates = self.candidates(histories)
        scores = self.rank_candidates(histories, candidates)
        lists = None
        if self.reranker is not None:
            lists = self.final_lists(
                histories, candidates, scores, min(self.eval_k, self.n_candidates)
            )
        return self.list_scores(candidates, scores, lists)

    def list_scores(
        self, candidates: np.ndarray, scores: np.ndarray, lists: np.ndarray | None
    ) -> np.ndarray:
        """``float32 [B, n_items]`` scores of the candidates (``-inf`` elsewhere).

        Without ``lists`` these are the L2 (or L1-order) scores. With re-ranked ``lists`` (``-1``
        padded), the listed items come first in list order, and the other candidates follow in L2
        order, so that the evaluator's seen-item filter back-fills a slot the way the two-tier row
        does (neural-only then equals the two-tier row exactly).
        """
        out = np.full((len(candidates), self.n_items), -np.inf, dtype=np.float32)
        rows, cols = np.nonzero(candidates >= 0)
        if lists is None:
            out[rows, candidates[rows, cols]] = scores[rows, cols]
            return out
        order = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1, kind="stable")
        out[rows, candidates[rows, cols]] = -order[rows, cols].astype(np.float32)
        listed_rows, slots = np.nonzero(lists >= 0)
        out[listed_rows, lists[listed_rows, slots]] = (lists.shape[1] - slots).astype(np.float32)
        return out

    def final_lists(
        self, histories: list[np.ndarray], candidates: np.ndarray, scores: np.ndarray, k: int
    ) -> np.ndarray:
        """``int64 [B, k]`` final top-``k`` lists (``-1`` padded) from the stages' outputs."""
        out = np.full((len(histories), k), -1, dtype=np.int64)
        for row, history in enumerate(histories):
            if self.reranker is not None:
                items = self.rerank(history, candidates[row], scores[row], k).items
            else:
                order = np.argsort(-scores[row], kind="stable")[:k]
                items = candidates[row, order][np.isfinite(scores[row, order])]
            out[row, : len(items)] = items
        return out

    def top_lists(self, histories: list[np.ndarray], k: int) -> np.ndarray:
        """``int64 [B, k]`` final top-``k`` lists (``-1`` padded): what users would be shown."""
        candidates = self.candidates(histories)
        return self.final_lists(
            histories, candidates, self.rank_candidates(histories, candidates), k
        )

    @property
    def n_items(self) -> int:
        n = getattr(self.l1, "n_items", None)
        if n is None:
            raise ConfigError("the L1 candidate source must expose n_items to score whole catalogs")
        return int(n)

    def recommend(self, history: np.ndarray, k: int = 10) -> Recommendation:
        """The top-``k`` items for one session, with per-stage wall times."""
        if k < 1 or k > self.n_candidates:
            raise ConfigError(f"k must lie in [1, n_candidates={self.n_candidates}], got {k}")
        histories = [np.asarray(history, dtype=np.int64)]
        t0 = time.perf_counter()
        candidates = self.candidates(histories)
        t1 = time.perf_counter()
        scores = self.rank_candidates(histories, candidates)[0]
        if self.reranker is None:
            top = np.argsort(-scores, kind="stable")[:k]
            t2 = time.perf_counter()
            keep = np.isfinite(scores[top])
            return Recommendation(
                items=candidates[0, top][keep],
                scores=scores[top][keep],
                l1_ms=(t1 - t0) * 1e3,
                l2_ms=(t2 - t1) * 1e3,
            )
        t2 = time.perf_counter()
        out = self.rerank(histories[0], candidates[0], scores, k)
        t3 = time.perf_counter()
        return Recommendation(
            items=out.items,
            scores=out.scores,
            l1_ms=(t1 - t0) * 1e3,
            l2_ms=(t2 - t1) * 1e3,
            rerank_ms=(t3 - t2) * 1e3,
            explanations=out.explanations,
            reranked=out,
        )


def recommend_batch(
    pipelines: list[TwoTierPipeline], histories: list[np.ndarray], k: int
) -> list[Recommendation]:
    """Several requests at once (a server's micro-batch): one L1 search and one L2 forward pass
    for all of them, then each request's own third stage (``pipelines[i]``; they must share L1
    and L2, as :meth:`TwoTierPipeline.with_reranker` copies do). Each answer equals what
    :meth:`TwoTierPipeline.recommend` gives; the L1 and L2 times are the batch's."""
    if not histories:
        return []
    base = pipelines[0]
    if any(p.l1 is not base.l1 or p.l2 is not base.l2 for p in pipelines):
        raise ConfigError(
            "a batch must share one L1 and one L2 (with_reranker copies of one pipeline)"
        )
    if k < 1 or k > base.n_candidates:
        raise ConfigError(f"k must lie in [1, n_candidates={base.n_candidates}], got {k}")
    histories = [np.asarray(h, dtype=np.int64) for h in histories]
    t0 = time.perf_counter()
    candidates = base.candidates(histories)
    t1 = time.perf_counter()
    scores = base.rank_candidates(histories, candidates)
    t2 = time.perf_counter()
    l1_ms, l2_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3
    out = []
    for row, (pipeline, history) in enumerate(zip(pipelines, histories, strict=True)):
        if pipeline.reranker is None:
            top = np.argsort(-scores[row], kind="stable")[:k]
            keep = np.isfinite(scores[row, top])
            out.append(
                Recommendation(candidates[row, top][keep], scores[row, top][keep], l1_ms, l2_ms)
            )
            continue
        t3 = time.perf_counter()
        result = pipeline.rerank(history, candidates[row], scores[row], k)
        rerank_ms = (time.perf_counter() - t3) * 1e3
        out.append(
            Recommendation(
                result.items,
                result.scores,
                l1_ms,
                l2_ms,
                rerank_ms=rerank_ms,
                explanations=result.explanations,
                reranked=result,
            )
        )
    return out


def latency_summary(recommendations: list[Recommendation]) -> dict[str, float]:
    """p50 / p99 milliseconds of each stage and of the whole request."""
    if not recommendations:
        raise ValueError("no requests to summarise")
    out: dict[str, float] = {"requests": float(len(recommendations))}
    for stage in ("l1", "l2", "rerank", "total"):
        ms = np.array([getattr(r, f"{stage}_ms") for r in recommendations])
        out[f"{stage}_p50_ms"] = float(np.percentile(ms, 50))
        out[f"{stage}_p99_ms"] = float(np.percentile(ms, 99))
    return out
