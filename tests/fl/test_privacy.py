"""Central DP (fl.private_aggregation) measured against what the mechanism promises.

* **Clipping.** Every client delta enters the sum with L2 norm ``min(||x||, C)`` and its own
  direction: with zero noise the release times ``q N`` is exactly the sum of the clipped deltas.
* **Noise.** With zero updates the release is ``N(0, (sigma C)^2) / (q N)`` per coordinate: over
  10^5 coordinates the empirical standard deviation lies within 5 standard errors (``s / sqrt(2N)``)
  of ``sigma C / (q N)``, the mean within 5 ``s / sqrt(N)`` of 0, and the share within one standard
  deviation within 5 binomial standard errors of 68.27%.
* **Accounting.** Epsilon after T rounds equals ``dp-accounting``'s accountant (PLD, the default,
  or RDP) composing T Poisson-subsampled Gaussian events, built here directly; amplification makes
  it smaller than the same releases without subsampling and than Mironov's unamplified bound, and
  the PLD accountant's epsilon is below the RDP bound's.
* **Sampling.** Poisson sampling includes each node with probability q (binomial bounds), and the
  same (seed, round) gives the same sample.
"""

import math

import numpy as np
import pytest
from dp_accounting import GaussianDpEvent, PoissonSampledDpEvent
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from fl.node_sampling import poisson_sample
from fl.private_aggregation import clipped_sum, dp_epsilon, noised_mean
from fl.settings import FederatedSettings
from fl.update_matrix import UpdateMatrix
from ranking.errors import ConfigError

GLOBAL = {"a": np.zeros((40, 8), np.float32), "b": np.zeros(30, np.float32)}
WIDTH = 40 * 8 + 30


def _updates(rng: np.random.Generator, scales: list[float], sparse_rows: int = 0) -> list:
    """Decoded updates whose delta norms are about ``scales``; with ``sparse_rows`` every update
    sends only that many rows of ``a`` (row-sparse), the others all of it."""
    updates = []
    for s in scales:
        state = {
            k: (v + s * rng.standard_normal(v.shape) / math.sqrt(WIDTH)).astype(np.float32)
            for k, v in GLOBAL.items()
        }
        touched = {}
        if sparse_rows:
            rows = np.sort(rng.choice(len(GLOBAL["a"]), sparse_rows, replace=False))
            state["a"], touched["a"] = state["a"][rows], rows
        updates.append((state, touched))
    return updates


def _naive_clipped_rows(updates: list, clip: float) -> np.ndarray:
    """The dense reference: every update's delta as a row, clipped by its own norm (float64)."""
    raw = UpdateMatrix.from_updates(GLOBAL, updates).values.astype(np.float64)
    norms = np.linalg.norm(raw, axis=1)
    return raw * np.minimum(1.0, clip / norms)[:, None]


@pytest.mark.parametrize("sparse_rows", [0, 7])
def test_every_update_enters_the_sum_clipped_to_the_norm_in_its_own_direction(sparse_rows):
    rng = np.random.default_rng(0)
    clip = 1.0
    updates = _updates(rng, [0.2, 0.6, 1.7, 4.0, 9.0, 30.0], sparse_rows)  # both branches
    raw = UpdateMatrix.from_updates(GLOBAL, updates).values.astype(np.float64)
    clipped = _naive_clipped_rows(updates, clip)
    norms = np.linalg.norm(raw, axis=1)
    assert (norms < clip).any() and (norms > clip).any()
    for x, c, n in zip(raw, clipped, norms, strict=True):
        assert np.linalg.norm(c) == pytest.approx(min(n, clip), rel=1e-9)
        assert np.allclose(c * n / np.linalg.norm(c), x)  # same direction
    total = clipped_sum(GLOBAL, updates, clip)
    assert np.allclose(total, clipped.sum(axis=0), rtol=1e-9, atol=1e-12)
    expected = 7.5
    release = noised_mean(total, clip, 0.0, expected, np.random.default_rng(1))
    assert np.allclose(release * expected, clipped.sum(axis=0))


def test_a_row_sparse_update_adds_nothing_to_the_rows_it_did_not_send():
    updates = _updates(np.random.default_rng(3), [5.0], sparse_rows=4)
    total = clipped_sum(GLOBAL, updates, 1.0)
    unsent = np.setdiff1d(np.arange(len(GLOBAL["a"])), updates[0][1]["a"])
    assert np.all(total[: GLOBAL["a"].size].reshape(GLOBAL["a"].shape)[unsent] == 0)
    assert np.linalg.norm(total) == pytest.approx(1.0, rel=1e-9)  # clipped over sent rows and b


def test_the_noise_has_std_sigma_c_over_the_expected_sample_size():
    sigma, clip, expected, n = 1.3, 0.7, 5.0, 100_000
    release = noised_mean(np.zeros(n), clip, sigma, expected, np.random.default_rng(2))
    target = sigma * clip / expected
    s = release.std()
    assert abs(s - target) < 5 * target / math.sqrt(2 * n)
    assert abs(release.mean()) < 5 * target / math.sqrt(n)
    inside = np.mean(np.abs(release) < target)
    assert abs(inside - 0.6827) < 5 * math.sqrt(0.6827 * 0.3173 / n)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
@pytest.mark.parametrize(
    ("rate", "sigma", "rounds"), [(0.01, 1.0, 50), (0.005, 0.7, 100), (0.2, 2.0, 7)]
)
def test_epsilon_matches_dp_accounting_with_amplification(rate, sigma, rounds, accountant):
    delta = 1e-6
    event = PoissonSampledDpEvent(rate, GaussianDpEvent(sigma))
    if accountant == "pld":
        direct = PLDAccountant().compose(event, rounds)
    else:
        direct = RdpAccountant()
        for _ in range(rounds):  # composed one round at a time, as the run releases them
            direct.compose(event)
    eps = dp_epsilon(rate, sigma, rounds, delta, accountant)
    assert eps == pytest.approx(direct.get_epsilon(delta), rel=1e-6)
    unamplified = dp_epsilon(1.0, sigma, rounds, delta, accountant)
    assert eps < unamplified
    # Mironov's bound for T unsubsampled Gaussian releases is an upper bound for both
    mironov = rounds / (2 * sigma**2) + 2 * math.sqrt(rounds * math.log(1 / delta) / (2 * sigma**2))
    assert unamplified <= mironov
    assert dp_epsilon(rate, sigma, rounds + 10, delta, accountant) > eps  # every release costs


def test_epsilon_asked_round_after_round_matches_composing_from_scratch():
    """A run asks for round t after round t - 1 (composed one more time), a resumed run jumps."""
    rate, sigma, delta = 0.02, 1.2, 1e-6
    for rounds in [*range(1, 13), 5, 6, 40]:
        direct = PLDAccountant().compose(
            PoissonSampledDpEvent(rate, GaussianDpEvent(sigma)), rounds
        )
        assert dp_epsilon(rate, sigma, rounds, delta) == pytest.approx(
            direct.get_epsilon(delta), rel=1e-6
        )


@pytest.mark.parametrize(("rate", "sigma", "rounds"), [(0.005, 0.45, 100), (0.01, 0.5, 100)])
def test_the_pld_accountant_is_tighter_than_the_rdp_bound(rate, sigma, rounds):
    pld = dp_epsilon(rate, sigma, rounds, 1e-6, "pld")
    rdp = dp_epsilon(rate, sigma, rounds, 1e-6, "rdp")
    assert 0 < pld < 0.9 * rdp


def test_an_unknown_accountant_is_refused_by_name():
    with pytest.raises(ValueError, match="fl.dp_accountant='moments'"):
        dp_epsilon(0.01, 1.0, 10, 1e-6, "moments")
    with pytest.raises(ConfigError, match="fl.dp_accountant"):
        FederatedSettings.create(dp_noise_multiplier=1.0, dp_accountant="moments")
    assert FederatedSettings.create(dp_noise_multiplier=1.0).dp_accountant == "pld"


def test_poisson_sampling_includes_each_node_with_the_rate_and_follows_the_seed():
    nodes = list(range(1000, 21000))
    rate = 0.01
    sizes = [len(poisson_sample(nodes, rate, seed=0, round_=r)) for r in range(1, 21)]
    n = len(nodes) * 20
    assert abs(sum(sizes) / n - rate) < 5 * math.sqrt(rate * (1 - rate) / n)
    assert len(set(sizes)) > 1  # the sample size is random, not fixed
    assert poisson_sample(nodes, rate, 0, 3) == poisson_sample(nodes, rate, 0, 3)
    assert poisson_sample(nodes, rate, 0, 3) != poisson_sample(nodes, rate, 1, 3)
