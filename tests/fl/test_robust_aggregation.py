"""Robust aggregators on hand-built updates: a planted outlier is ignored, fast Krum agrees with a
naive reference, row-sparse updates are compared over what was sent, and "a little is enough"
sends exactly mu - z sigma."""

import itertools

import numpy as np
import pytest

from fl.robust_aggregation import AGGREGATORS, RobustAggregator
from fl.simulated_attacks import alie_z, little_is_enough
from fl.update_matrix import UpdateMatrix
from ranking.errors import ConfigError

GLOBAL = {
    "emb": np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4),
    "w": np.zeros(5, np.float32),
    "step": np.array(3),
}


def _updates(deltas: list[dict[str, np.ndarray]], touched: list[dict] | None = None):
    """Decoded updates as :func:`fl.compression.decode_update` returns them: a row-sparse key holds
    only its sent rows' values."""
    touched = touched or [{} for _ in deltas]

    def sent(key: str, value: np.ndarray, t: dict) -> np.ndarray:
        return value[np.asarray(t[key])] if key in t else value

    return [
        ({**{k: sent(k, GLOBAL[k] + d[k], t) for k in ("emb", "w")}, "step": GLOBAL["step"]}, t)
        for d, t in zip(deltas, touched, strict=True)
    ]


def _honest(n: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    centre = {"emb": np.full((6, 4), 0.5), "w": np.full(5, -0.25)}
    return [
        {k: (v + 0.01 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in centre.items()}
        for _ in range(n)
    ]


@pytest.mark.parametrize("name", [a for a in AGGREGATORS if a != "none"])
def test_every_robust_aggregator_ignores_a_planted_outlier_that_moves_the_mean(name):
    rng = np.random.default_rng(0)
    honest = _honest(9, rng)
    outlier = {"emb": np.full((6, 4), 1e3, np.float32), "w": np.full(5, -1e3, np.float32)}
    matrix = UpdateMatrix.from_updates(GLOBAL, _updates([*honest, outlier]))
    honest_mean = UpdateMatrix.from_updates(GLOBAL, _updates(honest)).values.mean(axis=0)
    plain = RobustAggregator("none").aggregate(matrix)
    robust = RobustAggregator(name, trim=0.1, byzantine=1).aggregate(matrix)
    assert np.linalg.norm(plain - honest_mean) > 100  # the outlier drags the plain mean away
    # each honest coordinate lies within 0.01 * 5 of the centre, so a rule that ignores the
    # outlier stays within that spread per coordinate
    assert np.max(np.abs(robust - honest_mean)) < 0.05, name


def _naive_krum(vectors: np.ndarray, f: int, m: int) -> list[int]:
    """Blanchard et al. as written: explicit pairwise distances, sorted neighbours, argmin."""
    n = len(vectors)
    scores = []
    for i in range(n):
        dists = sorted(
            float(np.sum((vectors[i].astype(np.float64) - vectors[j]) ** 2))
            for j in range(n)
            if j != i
        )
        scores.append(sum(dists[: max(1, n - f - 2)]))
    return sorted(range(n), key=lambda i: (scores[i], i))[:m]


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("f", [0, 1, 3])
def test_fast_krum_selects_the_same_updates_as_a_naive_reference(sparse, f):
    rng = np.random.default_rng(f + 10 * sparse)
    deltas = [
        {
            "emb": rng.standard_normal((6, 4)).astype(np.float32) * s,
            "w": rng.standard_normal(5).astype(np.float32),
        }
        for s in rng.uniform(0.5, 3.0, size=12)
    ]
    touched = None
    if sparse:  # each client sent 2-4 embedding rows; its unsent rows keep the global value
        touched = []
        for d in deltas:
            rows = np.sort(rng.choice(6, size=rng.integers(2, 5), replace=False))
            mask = np.zeros(6, bool)
            mask[rows] = True
            d["emb"][~mask] = 0
            touched.append({"emb": rows})
    matrix = UpdateMatrix.from_updates(GLOBAL, _updates(deltas, touched))
    dense = np.stack([np.concatenate([d["emb"].ravel(), d["w"]]) for d in deltas])
    for name, m in (("krum", 1), ("multikrum", 5)):
        chosen = RobustAggregator(name, byzantine=f, select=m).selected(matrix)
        assert list(chosen) == _naive_krum(dense, f, m), (name, f, sparse)


def test_row_sparse_statistics_use_only_the_clients_that_sent_a_row():
    # row 5 is sent by one client only (value 2.0); the others' zeros there mean "not sent"
    deltas, touched = [], []
    for i in range(5):
        emb = np.zeros((6, 4), np.float32)
        emb[0] = 1.0 + i  # row 0: sent by everyone, values 1..5
        rows = [0]
        if i == 0:
            emb[5] = 2.0
            rows.append(5)
        deltas.append({"emb": emb, "w": np.full(5, float(i), np.float32)})
        touched.append({"emb": np.array(rows)})
    matrix = UpdateMatrix.from_updates(GLOBAL, _updates(deltas, touched))
    for name in ("none", "median", "trimmed-mean", "centered-clip"):
        agg = RobustAggregator(name, trim=0.2).aggregate(matrix)
        emb = agg[: 6 * 4].reshape(6, 4)  # float keys sorted: emb, then w
        assert np.allclose(emb[5], 2.0), name  # the lone sender's value, not diluted by zeros
        assert np.allclose(emb[1:5], 0.0), name  # nobody sent these rows
        assert np.allclose(emb[0], 3.0, atol=0.6), name  # the centre of 1..5
    assert np.allclose(RobustAggregator("median").aggregate(matrix)[:4], 3.0)
    assert np.allclose(RobustAggregator("trimmed-mean", trim=0.2).aggregate(matrix)[:4], 3.0)


def test_the_aggregate_applies_to_float_arrays_only_and_keeps_dtypes():
    matrix = UpdateMatrix.from_updates(GLOBAL, _updates(_honest(3, np.random.default_rng(1))))
    new = matrix.apply(GLOBAL, RobustAggregator("median").aggregate(matrix))
    assert new["emb"].dtype == np.float32 and new["step"] == 3
    assert np.allclose(new["emb"], GLOBAL["emb"] + 0.5, atol=0.05)


@pytest.mark.parametrize(("n", "f"), [(50, 12), (10, 1), (90, 9)])
def test_little_is_enough_sends_mu_minus_z_sigma_and_leaves_honest_updates_alone(n, f):
    rng = np.random.default_rng(n)
    deltas = _honest(n, rng)
    updates = _updates(deltas)
    flags = [i < f for i in range(n)]
    attacked = little_is_enough(GLOBAL, updates, flags, factor=1.0)
    values = UpdateMatrix.from_updates(GLOBAL, updates).values.astype(np.float64)
    expected = values.mean(axis=0) - alie_z(n, f) * values.std(axis=0)
    out = UpdateMatrix.from_updates(GLOBAL, attacked).values
    for i, bad in enumerate(flags):
        assert np.allclose(out[i], expected if bad else values[i], atol=1e-6)
    s = n // 2 + 1 - f
    assert alie_z(n, f) == pytest.approx(float(__import__("scipy").stats.norm.ppf((n - s) / n)))


def test_krum_distances_are_exact_for_every_pair():
    from fl.robust_aggregation import pairwise_sq_distances

    rng = np.random.default_rng(3)
    deltas = _honest(6, rng)
    matrix = UpdateMatrix.from_updates(GLOBAL, _updates(deltas))
    dist = pairwise_sq_distances(matrix)
    for i, j in itertools.combinations(range(6), 2):
        exact = np.sum((matrix.values[i].astype(np.float64) - matrix.values[j]) ** 2)
        assert dist[i, j] == pytest.approx(exact, rel=1e-6, abs=1e-9)


def test_little_is_enough_on_row_sparse_updates_sends_only_the_attackers_rows():
    rng = np.random.default_rng(5)
    deltas = _honest(8, rng)
    touched = [{"emb": np.sort(rng.choice(6, size=3, replace=False))} for _ in deltas]
    updates = _updates(deltas, touched)
    flags = [i < 2 for i in range(8)]
    attacked = little_is_enough(GLOBAL, updates, flags, factor=1.0)
    masked = UpdateMatrix.from_updates(GLOBAL, updates).masked().astype(np.float64)
    expected = np.nanmean(masked, axis=0) - alie_z(8, 2) * np.nanstd(masked, axis=0)
    again = UpdateMatrix.from_updates(GLOBAL, attacked)
    for i, bad in enumerate(flags):
        state, sent = attacked[i]
        assert state["emb"].shape == (len(touched[i]["emb"]), 4)  # the sent rows only
        assert sent is touched[i]
        if bad:
            ok = again.sent[i]
            assert np.allclose(again.values[i][ok], expected[ok], atol=1e-5)
        else:
            assert np.array_equal(state["emb"], updates[i][0]["emb"])


def test_centred_clipping_from_sparse_zero_bounds_a_row_that_only_an_attacker_sent():
    # row 5 is sent only by the attacker (sign-flipped x5); row 0 and w by everyone
    rng = np.random.default_rng(1)
    deltas, touched = [], []
    for i in range(10):
        emb = np.zeros((6, 4), np.float32)
        emb[0] = 0.5 + 0.01 * rng.standard_normal(4)
        rows = [0]
        if i == 9:  # the attacker
            emb[0] = -5 * 0.5
            emb[5] = -5.0
            rows.append(5)
        deltas.append({"emb": emb, "w": np.full(5, -0.25 if i < 9 else 1.25, np.float32)})
        touched.append({"emb": np.array(rows)})
    matrix = UpdateMatrix.from_updates(GLOBAL, _updates(deltas, touched))
    median_start = RobustAggregator("centered-clip").aggregate(matrix)[: 6 * 4].reshape(6, 4)
    zero_start = RobustAggregator("centered-clip", clip_start="sparse-zero").aggregate(matrix)
    emb = zero_start[: 6 * 4].reshape(6, 4)
    assert np.allclose(median_start[5], -5.0)  # the lone sender's value is kept in full
    # from zero, the attacker's whole update is clipped to the radius (the median honest distance
    # from the start, about 1.2 here), so row 5 moves by at most that, not by 5 per coordinate
    assert np.linalg.norm(emb[5]) < 1.5
    assert np.allclose(emb[0], 0.5, atol=0.1)  # rows that many sent still find the honest centre
    assert np.allclose(zero_start[6 * 4 :], -0.25, atol=0.1)


def test_an_unknown_clip_start_is_refused_with_its_name():
    with pytest.raises(ConfigError, match="robust_clip_start"):
        RobustAggregator("centered-clip", clip_start="mean")


def test_norm_filter_drops_scaled_sign_flips_and_averages_the_honest_updates():
    rng = np.random.default_rng(3)
    honest = _honest(8, rng)
    flipped = [{k: -5 * v for k, v in d.items()} for d in _honest(2, rng)]
    matrix = UpdateMatrix.from_updates(GLOBAL, _updates([*honest, *flipped]))
    honest_mean = UpdateMatrix.from_updates(GLOBAL, _updates(honest)).values.mean(axis=0)
    aggregator = RobustAggregator("norm-filter")
    assert aggregator.kept(matrix).tolist() == list(range(8))
    plain = RobustAggregator("none").aggregate(matrix)
    assert np.max(np.abs(plain - honest_mean)) > 0.5  # two flipped x5 drag the mean past zero
    # honest norms differ by ~1%, so bounding them by their median moves the mean by about that
    assert np.max(np.abs(aggregator.aggregate(matrix) - honest_mean)) < 0.02


def test_norm_filter_leaves_a_row_that_only_a_dropped_client_sent_unchanged():
    rng = np.random.default_rng(4)
    deltas = [*_honest(5, rng), {k: -5 * v for k, v in _honest(1, rng)[0].items()}]
    touched = [{"emb": [0, 1]} for _ in range(5)] + [{"emb": [0, 5]}]  # row 5: the attacker only
    matrix = UpdateMatrix.from_updates(GLOBAL, _updates(deltas, touched))
    target = matrix.apply(GLOBAL, RobustAggregator("norm-filter").aggregate(matrix))
    np.testing.assert_array_equal(target["emb"][5], GLOBAL["emb"][5])
    assert np.all(target["emb"][0] > GLOBAL["emb"][0])  # the honest push on row 0 survives


def test_norm_filter_bounds_the_updates_it_keeps_by_their_median_norm():
    rng = np.random.default_rng(5)
    deltas = _honest(5, rng)
    deltas[0] = {k: 1.8 * v for k, v in deltas[0].items()}  # long, but under 2x the median
    matrix = UpdateMatrix.from_updates(GLOBAL, _updates(deltas))
    aggregator = RobustAggregator("norm-filter", norm_ratio=2.0)
    assert aggregator.kept(matrix).tolist() == list(range(5))
    norms = np.linalg.norm(matrix.values, axis=1)
    bounded = matrix.values * np.minimum(1, np.median(norms) / norms)[:, None]
    np.testing.assert_allclose(aggregator.aggregate(matrix), bounded.mean(axis=0), rtol=1e-6)
    assert RobustAggregator("norm-filter", norm_ratio=1.5).kept(matrix).tolist() == [1, 2, 3, 4]


def test_a_norm_ratio_below_one_is_refused_with_its_name():
    with pytest.raises(ConfigError, match="robust_norm_ratio"):
        RobustAggregator("norm-filter", norm_ratio=0.5)
