"""The evaluator: ranks, seen-item filtering, sampled protocol and end-to-end metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from builders import log_from_sequences as make_log

from ranking.baselines import MostPopular
from ranking.data.splits import leave_one_out
from ranking.errors import DataError
from ranking.evaluation import (
    Scorer,
    evaluate,
    history_mask,
    rank_targets,
    sample_negatives,
    topk_items,
)


class FixedScorer:
    """Scores from a fixed ``[n_users, n_items]`` table, looked up by user id."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = np.asarray(table, dtype=np.float32)
        self.calls: list[int] = []

    def score(self, histories: list[np.ndarray], users: np.ndarray) -> np.ndarray:
        assert len(histories) == len(users)
        self.calls.append(len(users))
        return self.table[users]


class HistoryFirstScorer:
    """Puts the user's history items first (score 10), everything else by a fixed random order."""

    def __init__(self, n_items: int, seed: int = 0) -> None:
        self.base = np.random.default_rng(seed).random(n_items).astype(np.float32)

    def score(self, histories: list[np.ndarray], users: np.ndarray) -> np.ndarray:
        scores = np.tile(self.base, (len(users), 1))
        scores[history_mask(histories, len(self.base))] = 10.0
        return scores


# --------------------------------------------------------------------------------------------
# rank_targets / topk_items / history_mask
# --------------------------------------------------------------------------------------------


def test_rank_counts_ties_against_the_target() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.5, 0.5, 0.5, 0.9]], dtype=np.float32)
    np.testing.assert_array_equal(rank_targets(scores, np.array([2, 1])), [2, 3])
    np.testing.assert_array_equal(rank_targets(scores, np.array([0, 3])), [0, 0])


def test_seen_filtering_changes_the_rank_exactly() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.1]], dtype=np.float32)
    target = np.array([2])
    assert rank_targets(scores, target).tolist() == [2]
    mask = np.array([[True, False, False, False]])
    assert rank_targets(scores, target, mask).tolist() == [1]
    mask = np.array([[True, True, False, False]])
    assert rank_targets(scores, target, mask).tolist() == [0]
    # Masking the target itself (a repeat) never removes it, and items below it never count.
    mask = np.array([[True, False, True, True]])
    assert rank_targets(scores, target, mask).tolist() == [1]
    np.testing.assert_array_equal(scores, np.array([[0.9, 0.8, 0.7, 0.1]], dtype=np.float32))


def test_rank_targets_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        rank_targets(np.array([[0.1, np.nan]]), np.array([0]))


def test_topk_items_orders_and_marks_masked_slots() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [-np.inf, 0.2, -np.inf, -np.inf]])
    np.testing.assert_array_equal(topk_items(scores, 3), [[1, 3, 2], [1, -1, -1]])
    np.testing.assert_array_equal(topk_items(scores, 10), [[1, 3, 2, 0], [1, -1, -1, -1]])
    # Ties are broken towards the lower item id, also at the cut-off.
    tied = np.array([[0.0, 0.5, 0.5, 0.5, 1.0, 0.5]])
    np.testing.assert_array_equal(topk_items(tied, 3), [[4, 1, 2]])
    np.testing.assert_array_equal(topk_items(tied[:, ::-1], 3), [[1, 0, 2]])
    with pytest.raises(ValueError):
        topk_items(scores, 0)


def test_history_mask() -> None:
    mask = history_mask([np.array([0, 2, 2]), np.array([], dtype=np.int64)], 4)
    np.testing.assert_array_equal(mask, [[True, False, True, False], [False] * 4])


# --------------------------------------------------------------------------------------------
# sample_negatives
# --------------------------------------------------------------------------------------------


def test_sampled_negatives_avoid_blocked_items_and_are_distinct() -> None:
    rng = np.random.default_rng(1)
    allowed = rng.random((200, 50)) < 0.6
    allowed[:, :5] = True  # at least 5 allowed items per row
    negs = sample_negatives(allowed, 5, seed=3)
    assert negs.shape == (200, 5)
    assert allowed[np.arange(200)[:, None], negs].all()
    assert all(len(set(row)) == 5 for row in negs.tolist())
    # Deterministic per row id, independent of the other rows.
    again = sample_negatives(allowed[17:18], 5, seed=3, row_ids=np.array([17]))
    np.testing.assert_array_equal(again[0], negs[17])
    assert not np.array_equal(sample_negatives(allowed, 5, seed=4), negs)


def test_sampled_negatives_follow_the_weights() -> None:
    allowed = np.ones((20000, 3), dtype=bool)
    uniform = sample_negatives(allowed, 1, seed=0)[:, 0]
    np.testing.assert_allclose(np.bincount(uniform, minlength=3) / 20000, [1 / 3] * 3, atol=0.02)
    weighted = sample_negatives(allowed, 1, weights=np.array([1.0, 3.0, 0.0]), seed=0)[:, 0]
    np.testing.assert_allclose(
        np.bincount(weighted, minlength=3) / 20000, [0.25, 0.75, 0.0], atol=0.02
    )


def test_sampled_negatives_raise_when_too_few_candidates() -> None:
    allowed = np.array([[True, True, False], [True, True, True]])
    with pytest.raises(ValueError, match="query row 0 has only 2 items"):
        sample_negatives(allowed, 3)
    with pytest.raises(ValueError, match="non-zero weight"):
        sample_negatives(allowed[1:], 3, weights=np.array([1.0, 1.0, 0.0]))


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------

# Leave-one-out, test stage: u0 history [0, 1, 2] -> 3; u1 [0, 1, 3] -> 4; u2 [0, 2] -> 1;
# u3 is too short and only contributes training data.
HAND_LOG = [[0, 1, 2, 3], [0, 1, 3, 4], [0, 2, 1], [4, 4]]


def test_evaluate_most_popular_hand_computed() -> None:
    split = leave_one_out(make_log(HAND_LOG, n_items=5))
    model = MostPopular().fit(split.train)  # train counts [3, 2, 0, 0, 2]
    assert model.counts is not None
    np.testing.assert_array_equal(model.counts, [3, 2, 0, 0, 2])

    # filter_seen: u0 target 3 (score 0) loses to item 4 -> rank 1; u1 target 4 (2) -> rank 0;
    # u2 target 1 (2) ties with item 4, and ties count against the target -> rank 1.
    res = evaluate(model, split, "test", ks=(1, 2))
    assert res["n_users"] == 3 and res["n_targets"] == 3
    assert res["hr@1"] == pytest.approx(1 / 3)
    assert res["ndcg@1"] == pytest.approx(1 / 3)
    assert res["mrr@1"] == pytest.approx(1 / 3)
    assert res["hr@2"] == pytest.approx(1.0)
    assert res["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1 + 1 / math.log2(3)) / 3)
    assert res["mrr@2"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    # Top-1 lists: u0 -> 4, u1 -> 4, u2 -> 1 (tie with 4, lower id first).
    # History (train + valid) counts: [3, 2, 2, 1, 2], 10 interactions.
    assert res["coverage@1"] == pytest.approx(2 / 5)
    assert res["avg_pop@1"] == pytest.approx((2 + 2 + 2) / 3)
    assert res["novelty@1"] == pytest.approx(-math.log2((2 + 1) / (10 + 5)))  # Laplace-smoothed

    # Without filtering: ranks 4 (items 0, 1, 2, 4 score >= 0), 2 (items 0, 1), 2 (items 0, 4).
    raw = evaluate(model, split, "test", ks=(1, 2, 3, 5), filter_seen=False)
    assert raw["hr@1"] == 0.0
    assert raw["hr@2"] == 0.0
    assert raw["hr@3"] == pytest.approx(2 / 3)
    assert raw["hr@5"] == pytest.approx(1.0)
    assert raw["ndcg@5"] == pytest.approx((1 / math.log2(6) + 2 / math.log2(4)) / 3)
    assert raw["mrr@5"] == pytest.approx((1 / 5 + 1 / 3 + 1 / 3) / 3)
    assert raw["coverage@1"] == pytest.approx(1 / 5)  # everybody gets item 0


def test_evaluate_valid_stage_uses_train_history_only() -> None:
    split = leave_one_out(make_log(HAND_LOG, n_items=5))
    model = MostPopular().fit(split.train)
    # Valid targets: u0 2 (seen 0, 1 -> candidates 2 (0), 3 (0), 4 (2)) -> rank 2 (tie with 3);
    # u1 3 (seen 0, 1; 2 ties, 4 beats) -> rank 2; u2 2 (seen 0; 1, 3, 4 score >= 0) -> rank 3.
    res = evaluate(model, split, "valid", ks=(1, 2, 3, 4))
    assert res["hr@2"] == 0.0
    assert res["hr@3"] == pytest.approx(2 / 3)
    assert res["hr@4"] == pytest.approx(1.0)


def test_evaluate_masks_exclude_items_but_never_the_target() -> None:
    split = leave_one_out(make_log(HAND_LOG, n_items=5))
    model = MostPopular().fit(split.train)
    # Excluding item 4: u0's target 3 now ranks first; u1's target is 4 itself and is still ranked.
    res = evaluate(model, split, "test", ks=(1,), exclude_items=[4])
    assert res["hr@1"] == pytest.approx(1.0)
    assert res["coverage@1"] == pytest.approx(3 / 5)  # lists: 3, 4 (its own target), 1


def test_sampled_equals_full_when_negatives_cover_the_catalog() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 12
    log = make_log(
        [rng.integers(0, n_items, rng.integers(3, 9)).tolist() for _ in range(n_users)], n_items
    )
    split = leave_one_out(log)
    scorer = FixedScorer(rng.random((n_users, n_items)))
    full = evaluate(scorer, split, ks=(1, 3, 5), filter_seen=False)
    sampled = evaluate(
        scorer, split, ks=(1, 3, 5), filter_seen=False, protocol="sampled", n_negatives=n_items - 1
    )
    assert sampled == pytest.approx(full)
    assert 0 < full["hr@3"] < 1  # a non-trivial comparison


def test_sampled_protocol_never_draws_seen_items() -> None:
    rng = np.random.default_rng(2)
    n_items = 30
    log = make_log([rng.permutation(n_items)[:8].tolist() for _ in range(25)], n_items)
    split = leave_one_out(log)
    scorer = HistoryFirstScorer(n_items)
    # No repeats, so no target is a seen item. Seen items score 10, far above everything: if one
    # were drawn as a negative (or not masked in the full protocol) the target would lose rank 0.
    for protocol in ("full", "sampled"):
        filtered = evaluate(scorer, split, ks=(1,), protocol=protocol, n_negatives=10)
        unfiltered = evaluate(
            scorer, split, ks=(1,), protocol=protocol, n_negatives=10, filter_seen=False
        )
        base = FixedScorer(np.tile(scorer.base, (25, 1)))
        reference = evaluate(base, split, ks=(1,), protocol=protocol, n_negatives=10)
        assert filtered["hr@1"] == pytest.approx(reference["hr@1"])
        assert unfiltered["hr@1"] < filtered["hr@1"]


def test_sampled_protocol_ranks_against_n_negatives() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 50, 200
    log = make_log([rng.integers(0, n_items, 6).tolist() for _ in range(n_users)], n_items)
    split = leave_one_out(log)
    scorer = FixedScorer(rng.random((n_users, n_items)))
    res = evaluate(scorer, split, ks=(101,), protocol="sampled", n_negatives=100)
    assert res["hr@101"] == 1.0  # rank among 101 candidates is always < 101
    res = evaluate(
        scorer, split, ks=(10,), protocol="sampled", n_negatives=100, negative_sampling="popularity"
    )
    assert 0.0 <= res["hr@10"] <= 1.0


def test_results_do_not_depend_on_batch_size() -> None:
    rng = np.random.default_rng(4)
    n_users, n_items = 37, 60
    log = make_log([rng.integers(0, n_items, 7).tolist() for _ in range(n_users)], n_items)
    split = leave_one_out(log)
    scorer = FixedScorer(rng.random((n_users, n_items)))
    for protocol in ("full", "sampled"):
        big = evaluate(scorer, split, ks=(5, 10), protocol=protocol, n_negatives=20, seed=7)
        small = evaluate(
            scorer, split, ks=(5, 10), protocol=protocol, n_negatives=20, seed=7, batch_size=4
        )
        assert small == big
    assert scorer.calls[-1] == 37 % 4 and max(scorer.calls[-10:]) == 4


def test_evaluate_validates_arguments_and_scorer_output() -> None:
    split = leave_one_out(make_log(HAND_LOG, n_items=5))
    model = MostPopular().fit(split.train)
    assert isinstance(model, Scorer)
    with pytest.raises(ValueError, match="protocol"):
        evaluate(model, split, protocol="loo")
    with pytest.raises(ValueError, match="negative_sampling"):
        evaluate(model, split, protocol="sampled", negative_sampling="zipf")
    with pytest.raises(ValueError, match="ks"):
        evaluate(model, split, ks=())
    with pytest.raises(ValueError, match="stage"):
        evaluate(model, split, stage="train")
    with pytest.raises(ValueError, match="shape"):
        evaluate(FixedScorer(np.zeros((4, 3))), split)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(FixedScorer(np.full((4, 5), np.nan)), split)
    with pytest.raises(ValueError, match="fewer than n_negatives"):
        evaluate(model, split, protocol="sampled", n_negatives=4)


def test_evaluate_without_targets_raises_data_error() -> None:
    split = leave_one_out(make_log([[0, 1], [1]], n_items=2))
    with pytest.raises(DataError, match="no targets"):
        evaluate(MostPopular().fit(split.train), split)


def test_bootstrap_interval_brackets_the_metric_and_narrows_with_more_users():
    from ranking.metrics import bootstrap_ci, ndcg

    rng = np.random.default_rng(0)
    few = rng.integers(0, 30, size=50)
    many = rng.integers(0, 30, size=5000)
    lo_few, hi_few = bootstrap_ci(few, ndcg, 10, resamples=400)
    lo_many, hi_many = bootstrap_ci(many, ndcg, 10, resamples=400)
    assert lo_few <= ndcg(few, 10) <= hi_few and lo_many <= ndcg(many, 10) <= hi_many
    assert 0 < hi_many - lo_many < (hi_few - lo_few) / 4  # width ~ 1/sqrt(n): 10x more users
    perfect = np.zeros(40, dtype=np.int64)
    assert bootstrap_ci(perfect, ndcg, 10, resamples=50) == (1.0, 1.0)
