"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ranking.metrics import average_popularity, coverage, hit_rate, mrr, ndcg, novelty

RANKS = np.array([0, 2, 15])


def test_hit_rate_counts_ranks_below_k() -> None:
    assert hit_rate(RANKS, 10) == pytest.approx(2 / 3)
    assert hit_rate(RANKS, 1) == pytest.approx(1 / 3)
    assert hit_rate(RANKS, 2) == pytest.approx(1 / 3)  # rank 2 is the third place
    assert hit_rate(RANKS, 3) == pytest.approx(2 / 3)
    assert hit_rate(RANKS, 16) == pytest.approx(1.0)


def test_ndcg_hand_computed() -> None:
    assert ndcg(RANKS, 10) == pytest.approx((1 + 1 / 2) / 3)
    assert ndcg(RANKS, 2) == pytest.approx(1 / 3)
    assert ndcg(np.array([1]), 5) == pytest.approx(1 / math.log2(3))
    assert ndcg(RANKS, 16) == pytest.approx((1 + 1 / 2 + 1 / math.log2(17)) / 3)


def test_mrr_hand_computed() -> None:
    assert mrr(RANKS, 10) == pytest.approx((1 + 1 / 3) / 3)
    assert mrr(RANKS, 1) == pytest.approx(1 / 3)
    assert mrr(RANKS, 16) == pytest.approx((1 + 1 / 3 + 1 / 16) / 3)


def test_accuracy_metrics_reject_bad_input_and_handle_empty() -> None:
    for fn in (hit_rate, ndcg, mrr):
        assert math.isnan(fn(np.array([], dtype=int), 10))
        with pytest.raises(ValueError, match="positive integer"):
            fn(RANKS, 0)
        with pytest.raises(ValueError, match=">= 0"):
            fn(np.array([-1]), 10)


def test_coverage_counts_distinct_items_and_ignores_empty_slots() -> None:
    topk = np.array([[0, 1], [1, 2], [2, -1]])
    assert coverage(topk, 10) == pytest.approx(3 / 10)
    assert coverage(np.array([[4, 3, 2, 1, 0]]), 5) == pytest.approx(1.0)
    assert coverage(np.array([[-1, -1]]), 5) == 0.0
    with pytest.raises(ValueError, match="outside the catalog"):
        coverage(np.array([[7]]), 5)


def test_novelty_is_mean_self_information() -> None:
    counts = np.array([4, 2, 1, 1, 0])  # 8 interactions
    topk = np.array([[0, 1], [2, -1]])
    # p = 4/8, 2/8, 1/8 -> 1, 2, 3 bits; mean over the 3 filled slots.
    assert novelty(topk, counts, smoothing=0.0) == pytest.approx((1 + 2 + 3) / 3)
    # Laplace smoothing: p = (c + 1) / (8 + 5).
    expected = np.mean([-math.log2(5 / 13), -math.log2(3 / 13), -math.log2(2 / 13)])
    assert novelty(topk, counts) == pytest.approx(expected)
    # A never-seen item gets a finite value with smoothing.
    assert math.isfinite(novelty(np.array([[4]]), counts))
    assert novelty(np.array([[4]]), counts) == pytest.approx(-math.log2(1 / 13))


def test_average_popularity_is_mean_count() -> None:
    counts = np.array([10, 5, 0])
    assert average_popularity(np.array([[0, 1], [1, 2]]), counts) == pytest.approx(20 / 4)
    assert average_popularity(np.array([[0, -1]]), counts) == pytest.approx(10.0)
    assert math.isnan(average_popularity(np.array([[-1]]), counts))
