"""MostPopular and ItemKNN on hand-built logs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from builders import log_from_sequences as make_log

from ranking.baselines import ItemKNN, MostPopular, _keep_top_per_row
from ranking.evaluation import Scorer, topk_items

# Items 0 and 1 are always consumed together; item 2 goes with 3 (twice), 4 and 5 (once each).
KNN_LOG = [[0, 1], [1, 0], [2, 3], [3, 2], [2, 4], [2, 5]]


def test_most_popular_ranks_by_count() -> None:
    log = make_log([[2, 2, 1], [2, 1, 0], [2]], n_items=4)
    model = MostPopular().fit(log)
    assert isinstance(model, Scorer)
    scores = model.score([np.array([0]), np.array([], dtype=np.int32)], np.array([0, 1]))
    assert scores.dtype == np.float32 and scores.shape == (2, 4)
    np.testing.assert_array_equal(scores[0], [1, 2, 4, 0])
    np.testing.assert_array_equal(scores[1], scores[0])
    np.testing.assert_array_equal(topk_items(scores, 3)[0], [2, 1, 0])


def test_unfitted_models_raise() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        MostPopular().score([np.array([0])], np.array([0]))
    with pytest.raises(RuntimeError, match="not fitted"):
        ItemKNN().score([np.array([0])], np.array([0]))


def test_itemknn_recommends_the_cooccurring_item() -> None:
    model = ItemKNN().fit(make_log(KNN_LOG, n_items=6))
    assert isinstance(model, Scorer)
    scores = model.score([np.array([0]), np.array([3])], np.array([0, 1]))
    assert scores.dtype == np.float32 and scores.shape == (2, 6)
    assert topk_items(scores, 1)[:, 0].tolist() == [1, 2]
    # Cosine: |U0 & U1| = 2, |U0| = |U1| = 2 -> 1; |U2 & U3| = 2, |U2| = 4, |U3| = 2 -> 2 / sqrt(8).
    np.testing.assert_allclose(scores[0], [0, 1, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(scores[1], [0, 0, 2 / math.sqrt(8), 0, 0, 0], atol=1e-6)


def test_itemknn_similarity_matrix_hand_computed() -> None:
    model = ItemKNN(k_neighbors=None).fit(make_log(KNN_LOG, n_items=6))
    assert model.sim is not None
    sim = model.sim.toarray()
    np.testing.assert_allclose(np.diag(sim), 0.0)
    assert sim[2, 3] == pytest.approx(2 / math.sqrt(8))
    assert sim[2, 4] == pytest.approx(1 / math.sqrt(4))
    assert sim[4, 5] == 0.0
    np.testing.assert_allclose(sim, sim.T, atol=1e-7)

    cooc = ItemKNN(k_neighbors=None, similarity="cooccurrence").fit(make_log(KNN_LOG, n_items=6))
    assert cooc.sim is not None
    assert cooc.sim.toarray()[2].tolist() == [0, 0, 0, 2, 1, 1]


def test_itemknn_keeps_top_k_neighbours_per_item() -> None:
    model = ItemKNN(k_neighbors=1).fit(make_log(KNN_LOG, n_items=6))
    assert model.sim is not None
    sim = model.sim.toarray()
    # Item 2's neighbours are 3 (0.71), 4 (0.5), 5 (0.5): only 3 survives.
    assert np.flatnonzero(sim[2]).tolist() == [3]
    assert (np.count_nonzero(sim, axis=1) <= 1).all()
    # With k=2, items 4 and 5 tie for the second place; the lower item id wins.
    model2 = ItemKNN(k_neighbors=2).fit(make_log(KNN_LOG, n_items=6))
    assert model2.sim is not None
    assert np.flatnonzero(model2.sim.toarray()[2]).tolist() == [3, 4]


def test_itemknn_window_and_recency() -> None:
    log = make_log(KNN_LOG, n_items=6)
    s = 2 / math.sqrt(8)  # sim(2, 3)
    history = np.array([0, 2])

    plain = ItemKNN().fit(log).score([history], np.array([0]))[0]
    np.testing.assert_allclose(plain[[1, 3]], [1.0, s], atol=1e-6)

    decayed = ItemKNN(recency_decay=0.5).fit(log).score([history], np.array([0]))[0]
    np.testing.assert_allclose(decayed[[1, 3]], [0.5, s], atol=1e-6)

    windowed = ItemKNN(window=1).fit(log).score([history], np.array([0]))[0]
    np.testing.assert_allclose(windowed[[1, 3]], [0.0, s], atol=1e-6)

    # A repeated item counts once, with the weight of its most recent occurrence.
    repeat = ItemKNN(recency_decay=0.5).fit(log).score([np.array([2, 0, 2])], np.array([0]))[0]
    np.testing.assert_allclose(repeat[[1, 3]], [0.5, s], atol=1e-6)


def test_itemknn_empty_history_scores_zero() -> None:
    scores = (
        ItemKNN()
        .fit(make_log(KNN_LOG, n_items=6))
        .score([np.array([], dtype=np.int32)], np.array([0]))
    )
    np.testing.assert_array_equal(scores, np.zeros((1, 6), dtype=np.float32))


def test_itemknn_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="k_neighbors"):
        ItemKNN(k_neighbors=0)
    with pytest.raises(ValueError, match="recency_decay"):
        ItemKNN(recency_decay=0.0)
    with pytest.raises(ValueError, match="similarity"):
        ItemKNN(similarity="jaccard")


@pytest.mark.parametrize("cell_budget", [1, 7, 1 << 24])
def test_keep_top_per_row_matches_a_plain_sort(cell_budget: int) -> None:
    rng = np.random.default_rng(5)
    n_rows, n_cols, k = 30, 25, 4
    dense = np.where(rng.random((n_rows, n_cols)) < 0.4, rng.integers(1, 6, (n_rows, n_cols)), 0)
    rows, cols = np.nonzero(dense)
    vals = dense[rows, cols].astype(np.float64)
    kr, kc, kv = _keep_top_per_row(rows, cols, vals, n_rows, k, cell_budget=cell_budget)
    kept = {(int(r), int(c)) for r, c in zip(kr, kc, strict=True)}
    expected = set()
    for r in range(n_rows):
        entries = sorted((-dense[r, c], c) for c in np.flatnonzero(dense[r]))  # ties: lower column
        expected |= {(r, int(c)) for _, c in entries[:k]}
    assert kept == expected
    np.testing.assert_array_equal(kv, dense[kr, kc])
