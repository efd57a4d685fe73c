"""The two-tier pipeline: candidates only, L2 order, L1 order, single requests."""

from __future__ import annotations

import numpy as np
import pytest
from builders import rule_log

from ranking.data.splits import leave_one_out
from ranking.errors import ConfigError
from ranking.evaluation import evaluate
from ranking.pipeline import TwoTierPipeline, latency_summary
from ranking.recommender import SequenceRecommender

N_ITEMS = 30


class FixedCandidates:
    """An L1 stand-in returning a known candidate list per history (its first item's neighbours)."""

    n_items = N_ITEMS

    def __init__(self, width: int = 5) -> None:
        self.width = width

    def retrieve(self, histories, k, *, exclude_seen=True):
        out = np.full((len(histories), k), -1, dtype=np.int64)
        for row, history in enumerate(histories):
            ids = [(int(history[-1]) + j) % N_ITEMS for j in range(1, self.width + 1)]
            ids = [i for i in ids if not (exclude_seen and i in set(history.tolist()))][:k]
            out[row, : len(ids)] = ids
        return out


@pytest.fixture(scope="module")
def scorer() -> SequenceRecommender:
    model = {"hidden": 16, "n_blocks": 1}
    return SequenceRecommender("sasrec", n_items=N_ITEMS, model=model, train={"max_len": 8})


def histories() -> list[np.ndarray]:
    return [np.array([1, 2, 3]), np.array([7, 8]), np.array([28, 29])]


def test_candidate_scores_equal_the_full_ranking_scores(scorer):
    hs = histories()
    candidates = FixedCandidates().retrieve(hs, 5)
    full = scorer.score(hs, np.arange(3))
    got = scorer.score_candidates(hs, candidates)
    np.testing.assert_allclose(
        got, np.take_along_axis(full, candidates, axis=1), rtol=1e-5, atol=1e-5
    )
    padded = np.where(np.arange(5) < 2, candidates, -1)
    assert np.isneginf(scorer.score_candidates(hs, padded)[:, 2:]).all()


def test_two_tier_scores_only_candidates_with_l2_scores(scorer):
    hs = histories()
    pipeline = TwoTierPipeline(FixedCandidates(), scorer, n_candidates=5)
    scores = pipeline.score(hs, np.arange(3))
    candidates = FixedCandidates().retrieve(hs, 5)
    full = scorer.score(hs, np.arange(3))
    for row in range(3):
        mask = np.zeros(N_ITEMS, dtype=bool)
        mask[candidates[row]] = True
        assert np.isneginf(scores[row, ~mask]).all()
        np.testing.assert_allclose(scores[row, mask], full[row, mask], rtol=1e-5, atol=1e-5)


def test_l1_only_keeps_the_retrieval_order():
    pipeline = TwoTierPipeline(FixedCandidates(), None, n_candidates=5)
    rec = pipeline.recommend(np.array([4, 5]), k=3)
    assert rec.items.tolist() == [6, 7, 8]


def test_a_target_outside_the_candidates_is_a_miss(scorer):
    # rule log: the next item is always last + 1, which FixedCandidates(width=1) always proposes
    log = rule_log(N_ITEMS, 40)
    split = leave_one_out(log)
    always = evaluate(TwoTierPipeline(FixedCandidates(width=1), None, 1), split, "test", ks=(10,))
    assert always["hr@10"] == pytest.approx(1.0)

    class Never(FixedCandidates):
        def retrieve(self, histories, k, *, exclude_seen=True):
            ids = super().retrieve(histories, k, exclude_seen=exclude_seen)
            return np.where(ids >= 0, (ids + 5) % N_ITEMS, -1)

    never = evaluate(TwoTierPipeline(Never(width=1), scorer, 1), split, "test", ks=(10,))
    assert never["hr@10"] == 0.0


def test_recommend_ranks_candidates_by_l2_and_times_each_stage(scorer):
    pipeline = TwoTierPipeline(FixedCandidates(), scorer, n_candidates=5)
    history = np.array([10, 11, 12])
    rec = pipeline.recommend(history, k=3)
    candidates = FixedCandidates().retrieve([history], 5)[0]
    l2 = scorer.score_candidates([history], candidates[None])[0]
    assert rec.items.tolist() == candidates[np.argsort(-l2, kind="stable")[:3]].tolist()
    assert np.all(np.diff(rec.scores) <= 0)
    assert rec.l1_ms > 0 and rec.l2_ms > 0 and rec.total_ms == pytest.approx(rec.l1_ms + rec.l2_ms)
    summary = latency_summary([rec, pipeline.recommend(history, k=3)])
    assert summary["requests"] == 2 and summary["total_p99_ms"] >= summary["total_p50_ms"] > 0


def test_bad_settings_are_refused(scorer):
    with pytest.raises(ConfigError, match="n_candidates"):
        TwoTierPipeline(FixedCandidates(), scorer, n_candidates=0)
    with pytest.raises(ConfigError, match="k must lie"):
        TwoTierPipeline(FixedCandidates(), scorer, n_candidates=5).recommend(np.array([1]), k=6)


def test_a_reranker_is_the_third_stage_and_explains_each_item(scorer):
    from ranking.data import Catalog
    from ranking.hybrid import build_reranker
    from ranking.rules import RerankContext

    category = np.arange(N_ITEMS) % 2  # two categories
    catalog = Catalog(
        ids=[str(i) for i in range(N_ITEMS)],
        text=[""] * N_ITEMS,
        category=category,
        category_names=("a", "b"),
    )
    context = RerankContext.from_catalog(catalog, popularity=np.ones(N_ITEMS), k=4)
    capped = build_reranker(
        {"name": "constrained", "rules": [{"name": "category_cap", "max_per_category": 1}]}
    )
    pipeline = TwoTierPipeline(
        FixedCandidates(width=8), scorer, n_candidates=8, reranker=capped, context=context
    )
    answer = pipeline.recommend(np.array([1, 2, 3]), k=4)
    assert (
        len(answer.items) == 2 and len(set(category[answer.items])) == 2
    )  # at most one per category
    assert answer.rerank_ms > 0 and answer.total_ms >= answer.l1_ms + answer.l2_ms
    assert [e["item"] for e in answer.explanations] == answer.items.tolist()
    assert all("l1_rank" in e and "l2_score" in e for e in answer.explanations)
    removed = answer.reranked.removed  # the capped candidates, each named with the rule that acted
    assert removed and all(rule == "category_cap" for rule, _ in removed.values())
    assert not set(removed) & set(answer.items.tolist())
    # neural-only changes nothing: the same lists and the same evaluation scores as no re-ranker
    neural = pipeline.with_reranker(build_reranker({"name": "neural"}))
    plain = TwoTierPipeline(FixedCandidates(width=8), scorer, n_candidates=8)
    hs = histories()
    np.testing.assert_array_equal(neural.top_lists(hs, 4), plain.top_lists(hs, 4))
    order = lambda s: np.argsort(-s, axis=1, kind="stable")[:, :4]  # noqa: E731
    np.testing.assert_array_equal(
        order(neural.score(hs, np.arange(3))), order(plain.score(hs, np.arange(3)))
    )


def test_a_micro_batch_answers_each_request_as_a_single_request_would(scorer):
    from ranking.data import Catalog
    from ranking.hybrid import build_reranker
    from ranking.pipeline import recommend_batch
    from ranking.rules import RerankContext

    catalog = Catalog(
        ids=np.array([f"i{n}" for n in range(N_ITEMS)]),
        text=np.array([""] * N_ITEMS),
        category=np.arange(N_ITEMS) % 3,
        category_names=("a", "b", "c"),
    )
    context = RerankContext.from_catalog(catalog, popularity=np.arange(N_ITEMS, dtype=float))
    requests = histories() + [np.array([4]), np.array([10, 11, 12, 13])]
    base = TwoTierPipeline(FixedCandidates(width=8), scorer, n_candidates=16)
    blend = base.with_reranker(
        build_reranker({"name": "blend", "weights": {"l2": 1.0, "popularity": 0.5}}), context
    )
    pipelines = [base if n % 2 else blend for n in range(len(requests))]
    batch = recommend_batch(pipelines, requests, k=5)
    for pipeline, history, got in zip(pipelines, requests, batch, strict=True):
        alone = pipeline.recommend(history, k=5)
        np.testing.assert_allclose(got.scores, alone.scores, rtol=1e-5, atol=1e-5)
        assert got.items.tolist() == alone.items.tolist()
        assert (got.reranked is None) == (pipeline.reranker is None)
    with pytest.raises(ConfigError, match="share one L1 and one L2"):
        other = TwoTierPipeline(FixedCandidates(), scorer, 16)
        recommend_batch([base, other], requests[:2], k=5)
