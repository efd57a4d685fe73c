"""Central differential privacy that composes with any server optimiser.

The mechanism of DP-FedAvg (McMahan et al., ICLR 2018), run by a trusted server on the decoded
client updates, before the strategy's server optimiser:

1. **Poisson sampling**: every client takes part in a round independently with probability
   ``q = fraction-train`` (:func:`poisson_sample`), so the round's sample size is random.
2. **Clipping**: each client's update delta is scaled to L2 norm at most ``C`` (all float arrays
   together; a row-sparse update's unsent rows count as 0).
3. **Uniform sum + Gaussian noise**: the clipped deltas are summed with equal weights (weighting by
   example counts would break the sensitivity bound), ``N(0, (sigma C)^2)`` is added to every
   coordinate (sent or not, so the set of touched rows is hidden too), and the sum is divided by
   the *expected* sample size ``q N``, a constant, so the divisor leaks nothing.
4. The noised average is handed to FedAvg, FedAvgM, FedAdam or FedYogi: post-processing keeps the
   guarantee.

**Accounting.** Under add/remove-one adjacency (a neighbouring population has one client more or
fewer) the sum has sensitivity ``C``, and every round is one Poisson-subsampled Gaussian mechanism
with rate ``q`` and noise multiplier ``sigma``. :func:`dp_epsilon` composes them with Google's
``dp-accounting``: by default (``fl.dp_accountant=pld``) with privacy loss distributions, which
give a tight epsilon for the Poisson-subsampled Gaussian (about 18% below the RDP bound at q 0.5%,
sigma 0.45, 100 rounds); ``rdp`` uses the RDP accountant, an upper bound that is looser. Every round releases a model, also one in which clients
dropped out or none was sampled (dropping out only lowers a client's participation), so every
round is accounted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from fl.payload_format import DecodedUpdate
from fl.update_matrix import float_keys

__all__ = ["clipped_sum", "dp_epsilon", "noised_mean"]


def clipped_sum(
    global_state: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate], clip: float
) -> np.ndarray:
    """``sum_i clip(x_i, C)`` over the float coordinates of ``global_state`` (float64), flattened
    like an :class:`fl.update_matrix.UpdateMatrix` row.

    ``x_i`` is update ``i``'s delta (its weights minus the global ones; 0 on the rows a row-sparse
    update did not send), scaled to L2 norm at most ``clip``. The sum is taken one update at a time
    and a row-sparse update touches only the rows it sent, so a round costs one vector of the
    model's size rather than a dense [clients x coordinates] matrix.
    """
    keys = float_keys(global_state)
    sizes = [np.asarray(global_state[k]).size for k in keys]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    total = np.zeros(int(starts[-1]))
    views = {
        k: total[a:b].reshape(np.shape(global_state[k]))
        for k, a, b in zip(keys, starts[:-1], starts[1:], strict=True)
    }
    refs = {k: np.asarray(global_state[k], np.float32) for k in keys}
    for state, touched in updates:
        deltas: dict[str, tuple[Any, np.ndarray]] = {}
        for key in keys:
            if key in touched:  # the sent rows only; unsent rows have delta 0
                rows = np.asarray(touched[key], dtype=np.int64)
                deltas[key] = (rows, np.asarray(state[key], np.float32) - refs[key][rows])
            else:
                deltas[key] = (slice(None), np.asarray(state[key], np.float32) - refs[key])
        norm = float(
            np.sqrt(sum(np.sum(np.square(d, dtype=np.float64)) for _, d in deltas.values()))
        )
        scale = min(1.0, clip / max(norm, 1e-300))
        for key, (where, delta) in deltas.items():
            views[key][where] += scale * delta.astype(np.float64)  # rows are unique (validated)
    return total


def noised_mean(
    total: np.ndarray,
    clip: float,
    noise_multiplier: float,
    expected_clients: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """``(total + N(0, (sigma C)^2 I)) / expected_clients``: the release of a :func:`clipped_sum`
    (all zeros when nobody's update arrived: the release is then pure noise)."""
    noised = np.asarray(total, dtype=np.float64) + rng.normal(
        0.0, noise_multiplier * clip, size=len(total)
    )
    return noised / expected_clients


def dp_epsilon(
    rate: float, noise_multiplier: float, releases: int, delta: float, accountant: str = "pld"
) -> float:
    """Epsilon at ``delta`` after ``releases`` Poisson-subsampled Gaussian releases (add/remove-one
    adjacency), computed by ``dp-accounting`` with privacy loss distributions (``pld``) or RDP
    (``rdp``)."""
    if releases == 0:
        return 0.0
    if accountant == "pld":
        composed = _pld_after(float(rate), float(noise_multiplier), releases)
        return float(composed.get_epsilon_for_delta(delta))
    if accountant != "rdp":
        raise ValueError(f"fl.dp_accountant={accountant!r}: expected 'pld' or 'rdp'")
    from dp_accounting import GaussianDpEvent, PoissonSampledDpEvent
    from dp_accounting.rdp import RdpAccountant

    rdp = RdpAccountant()
    rdp.compose(PoissonSampledDpEvent(rate, GaussianDpEvent(noise_multiplier)), releases)
    return float(rdp.get_epsilon(delta))


_LAST_COMPOSED: dict[tuple[float, float], tuple[int, Any]] = {}
"""The latest ``(releases, composed PLD)`` per ``(rate, sigma)``: a run asks for round t after
round t - 1, and one more composition (about 0.07 s) is cheaper than composing t releases anew."""


def _pld_after(rate: float, noise_multiplier: float, releases: int) -> Any:
    one_release = _poisson_gaussian_pld(rate, noise_multiplier)
    key = (rate, noise_multiplier)
    done, composed = _LAST_COMPOSED.get(key, (0, None))
    if composed is not None and done == releases:
        return composed
    if composed is not None and done == releases - 1:
        composed = composed.compose(one_release)
    else:
        composed = one_release.self_compose(releases)
    _LAST_COMPOSED[key] = (releases, composed)
    return composed


@lru_cache(maxsize=16)
def _poisson_gaussian_pld(rate: float, noise_multiplier: float) -> Any:
    """One Poisson-subsampled Gaussian release as a privacy loss distribution, built as
    ``dp-accounting``'s ``PLDAccountant`` builds it (about 1 s, once a run)."""
    from dp_accounting import NeighboringRelation
    from dp_accounting.pld import privacy_loss_distribution

    return privacy_loss_distribution.from_gaussian_mechanism(
        standard_deviation=noise_multiplier,
        value_discretization_interval=1e-4,
        sampling_prob=rate,
        neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
    )
