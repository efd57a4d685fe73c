"""Beyond-accuracy metrics (diversity, exposure, long tail, calibration, violations) by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ranking.metrics import (
    calibration_kl,
    gini_index,
    intra_list_diversity,
    long_tail_mask,
    tail_share,
    violation_rate,
)


def test_intra_list_diversity_is_the_mean_pairwise_cosine_distance() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])  # the third is normalised inside
    topk = np.array([[0, 1, -1], [0, 1, 2], [2, -1, -1]])
    first = 1.0
    second = (1.0 + 2 * (1 - 1 / math.sqrt(2))) / 3
    # The last list has a single item: no pair, left out of the mean.
    assert intra_list_diversity(topk, vectors) == pytest.approx((first + second) / 2)
    assert intra_list_diversity(np.array([[0, 0]]), vectors) == pytest.approx(0.0)
    assert math.isnan(intra_list_diversity(np.array([[1, -1]]), vectors))
    with pytest.raises(ValueError, match="outside the catalog"):
        intra_list_diversity(np.array([[0, 5]]), vectors)


def test_gini_index_of_exposure() -> None:
    assert gini_index(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)
    assert gini_index(np.array([[3, 3], [3, -1]]), 4) == pytest.approx(0.75)  # (n - 1) / n
    # Counts sorted ascending (0, 1, 1, 2): (-3*0 - 1*1 + 1*1 + 3*2) / (4 * 4).
    assert gini_index(np.array([[0, 1], [0, 2]]), 4) == pytest.approx(0.375)
    assert math.isnan(gini_index(np.array([[-1, -1]]), 4))


def test_long_tail_mask_by_items_and_by_interactions() -> None:
    counts = np.array([10, 5, 3, 1, 1])
    assert long_tail_mask(counts, 0.2).tolist() == [False, True, True, True, True]
    assert long_tail_mask(counts, 0.4).tolist() == [False, False, True, True, True]
    # The head holds at least half / 60% of the 20 interactions.
    assert long_tail_mask(counts, 0.5, by="interactions").tolist() == [
        False,
        True,
        True,
        True,
        True,
    ]
    assert long_tail_mask(counts, 0.6, by="interactions").tolist() == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert long_tail_mask(np.array([1, 1, 1, 1]), 0.5).tolist() == [False, False, True, True]
    assert long_tail_mask(counts, 0.0).all()
    with pytest.raises(ValueError, match="by must be"):
        long_tail_mask(counts, 0.2, by="users")


def test_tail_share_is_the_mean_share_of_tail_items_per_list() -> None:
    tail = np.array([False, True, True, True, True])
    topk = np.array([[0, 1], [2, -1], [-1, -1]])
    assert tail_share(topk, tail) == pytest.approx((1 / 2 + 1) / 2)
    assert tail_share(np.array([[0, 0]]), tail) == 0.0
    assert math.isnan(tail_share(np.array([[-1]]), tail))


def test_calibration_kl_hand_computed() -> None:
    category = np.array([0, 0, 1, 1, -1])
    histories = [np.array([0, 2]), np.array([2, 3]), np.array([4])]
    topk = np.array([[0, 1], [2, 4], [0, 1]])
    alpha = 0.01
    # User 0: p = (.5, .5), q = (1, 0), q~ = (.995, .005). User 1: p = q = (0, 1): KL 0.
    # User 2 has no categorised history and is left out.
    user0 = 0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005)
    assert calibration_kl(topk, histories, category, 2, alpha) == pytest.approx(user0 / 2)
    # A list without any categorised item: q = 0, q~ = alpha p, KL = log(1 / alpha).
    no_cats = calibration_kl(np.array([[4, -1]]), [np.array([0])], category, 2, alpha)
    assert no_cats == pytest.approx(math.log(1 / alpha))
    assert math.isnan(calibration_kl(np.array([[0]]), [np.array([4])], category, 2))
    with pytest.raises(ValueError, match="alpha"):
        calibration_kl(topk, histories, category, 2, alpha=0.0)


def test_violation_rate_counts_the_lists_that_break_a_rule() -> None:
    topk = np.array([[0, 1], [2, 3], [-1, -1]])
    seen: list[tuple[int, list[int]]] = []

    def violates(u: int, items: np.ndarray) -> bool:
        seen.append((u, items.tolist()))
        return 2 in items

    assert violation_rate(topk, violates) == pytest.approx(1 / 3)
    assert seen == [(0, [0, 1]), (1, [2, 3]), (2, [])]
    assert math.isnan(violation_rate(np.empty((0, 2), dtype=int), violates))
