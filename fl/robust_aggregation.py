"""Robust aggregation of client update deltas, ahead of any server optimiser.

Each aggregator maps an :class:`fl.update_matrix.UpdateMatrix` (one delta per client) to one
aggregated delta; the server adds it to the global model and hands the result to the strategy's
server optimiser (FedAvg, FedAvgM, FedAdam, FedYogi), so robustness and adaptive optimisation
compose. Coordinates a client did not send (row-sparse updates) take no part in that coordinate's
statistic.

* ``median``: coordinate-wise median (Yin et al., ICML 2018).
* ``trimmed-mean``: coordinate-wise mean after dropping the ``trim`` fraction at each end.
* ``krum`` / ``multikrum``: the update(s) with the smallest sum of squared distances to their
  ``n - f - 2`` nearest neighbours (Blanchard et al., NeurIPS 2017); Multi-Krum averages the ``m``
  best. Distances come from one sparse Gram matrix over the sent coordinates, so the cost grows
  with what the clients sent, not with ``n^2`` full-size vector differences.
* ``centered-clip``: ``v <- v + mean_i clip(x_i - v, tau)``, iterated from a start
  (Karimireddy et al., ICML 2021); ``tau`` defaults to the median distance to that start. The
  start is the coordinate-wise median of the senders (``clip_start="median"``), or, with
  ``"sparse-zero"``, that median only where at least :data:`MIN_MEDIAN_SENDERS` clients sent a
  coordinate and no change (the global model) where fewer did. With row-sparse one-user updates an
  item row is often sent by one or two clients: its median start is their own value, which
  clipping then cannot move, so a row sent only by an attacker keeps the attacker's full value.
  From a zero start that sender's contribution is clipped like any other.
* ``norm-filter``: drops every update longer than ``norm_ratio`` times the median update norm,
  bounds the rest by their median norm, and averages them over the senders of each coordinate.
  Clipping (centred clipping, or bounding norms alone) leaves a scaled sign-flipped update in the
  average with weight -1; dropping it leaves weight 0. With one-user clients the honest updates
  are nearly orthogonal (cosine ~0.1 to their mean), so no direction test separates a flipped
  update from an honest one, but their norms are alike (one SGD step of a clipped gradient), so a
  scaled update stands out. A flipped update of ordinary length passes and counts with weight -1,
  as under clipping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ranking.errors import ConfigError

if TYPE_CHECKING:  # the settings import AGGREGATORS on devices, where scipy is not installed
    from fl.update_matrix import UpdateMatrix

__all__ = ["AGGREGATORS", "RobustAggregator", "krum_scores", "pairwise_sq_distances"]

AGGREGATORS = (
    "none",
    "median",
    "trimmed-mean",
    "krum",
    "multikrum",
    "centered-clip",
    "norm-filter",
)
"""``none``: the strategy's own aggregation (no robust stage)."""


def pairwise_sq_distances(updates: UpdateMatrix) -> np.ndarray:
    """``D[i, j] = ||x_i - x_j||^2`` from the Gram matrix of the sent coordinates."""
    x = updates.sparse().astype(np.float64)
    gram = np.asarray((x @ x.T).toarray())
    norms = np.diag(gram)
    dist = norms[:, None] + norms[None, :] - 2 * gram
    np.fill_diagonal(dist, 0.0)
    return np.maximum(dist, 0.0)


def krum_scores(dist: np.ndarray, f: int) -> np.ndarray:
    """Krum score of each update: the sum of its ``n - f - 2`` smallest distances to the others."""
    n = dist.shape[0]
    k = max(1, n - f - 2)
    others = np.where(np.eye(n, dtype=bool), np.inf, dist)
    nearest = np.sort(others, axis=1)[:, : min(k, n - 1)] if n > 1 else np.zeros((1, 0))
    return nearest.sum(axis=1)


def _sender_mean(
    updates: UpdateMatrix, rows: np.ndarray | None = None, scale: np.ndarray | None = None
) -> np.ndarray:
    """Uniform mean of the chosen clients' deltas (each times its ``scale``, if given) over the
    clients that sent each coordinate."""
    values = updates.values if rows is None else updates.values[rows]
    values = values.astype(np.float64)
    if scale is not None:
        values = values * scale[:, None]
    if updates.sent is None:
        return values.mean(axis=0)
    sent = updates.sent if rows is None else updates.sent[rows]
    counts = sent.sum(axis=0)
    total = np.where(sent, values, 0.0).sum(axis=0)
    return np.divide(total, counts, out=np.zeros_like(total), where=counts > 0)


def _trimmed_mean(masked: np.ndarray, trim: float) -> np.ndarray:
    """Coordinate-wise mean after dropping ``floor(trim * k)`` values at each end, where ``k`` is
    the number of senders of the coordinate (NaN = not sent)."""
    ordered = np.sort(masked.astype(np.float64), axis=0)  # NaNs sort last
    count = np.sum(~np.isnan(ordered), axis=0)
    cut = np.floor(trim * count).astype(np.int64)
    lo, hi = cut, count - cut
    cumulative = np.vstack([np.zeros((1, ordered.shape[1])), np.nancumsum(ordered, axis=0)])
    total = (
        np.take_along_axis(cumulative, hi[None, :], 0)[0]
        - np.take_along_axis(cumulative, lo[None, :], 0)[0]
    )
    kept = hi - lo
    return np.divide(total, kept, out=np.zeros_like(total), where=kept > 0)


def _median(masked: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if not np.isnan(masked).any():
            return np.median(masked.astype(np.float64), axis=0)
        counts = np.sum(~np.isnan(masked), axis=0)
        out = np.zeros(masked.shape[1])
        some = counts > 0
        out[some] = np.nanmedian(masked[:, some].astype(np.float64), axis=0)
        return out


CLIP_STARTS = ("median", "sparse-zero")
MIN_MEDIAN_SENDERS = 3
"""``sparse-zero``: coordinates sent by fewer clients start at zero."""


def _centered_clip(
    updates: UpdateMatrix, tau: float, iterations: int, start: str = "median"
) -> np.ndarray:
    values = updates.values.astype(np.float64)
    sent = updates.sent if updates.sent is not None else np.ones(values.shape, dtype=bool)
    counts = sent.sum(axis=0)
    v = _median(updates.masked())
    if start == "sparse-zero":
        v = np.where(counts >= MIN_MEDIAN_SENDERS, v, 0.0)
    if tau <= 0:  # the median distance to the start: clips the far half
        tau = float(np.median(np.linalg.norm(np.where(sent, values - v, 0.0), axis=1))) or 1.0
    for _ in range(iterations):
        diff = np.where(sent, values - v, 0.0)
        norms = np.linalg.norm(diff, axis=1)
        scale = np.minimum(1.0, tau / np.maximum(norms, 1e-12))
        step = (diff * scale[:, None]).sum(axis=0)
        v = v + np.divide(step, counts, out=np.zeros_like(step), where=counts > 0)
    return v


def update_norms(updates: UpdateMatrix) -> np.ndarray:
    """Each client's update norm over the coordinates it sent."""
    values = updates.values.astype(np.float64)
    if updates.sent is not None:
        values = np.where(updates.sent, values, 0.0)
    return np.linalg.norm(values, axis=1)


def _within_norm_ratio(norms: np.ndarray, ratio: float) -> np.ndarray:
    """Indices of the norms at most ``ratio`` x their median (never empty: ``ratio`` >= 1)."""
    return np.flatnonzero(norms <= ratio * float(np.median(norms)))


@dataclass(frozen=True)
class RobustAggregator:
    """One robust aggregation rule and its parameters (``fl.robust-*`` settings)."""

    name: str = "none"
    trim: float = 0.1
    byzantine: int = 1
    select: int = 0
    clip_radius: float = 0.0
    clip_iterations: int = 3
    clip_start: str = "median"
    norm_ratio: float = 2.0

    def __post_init__(self) -> None:
        if self.name not in AGGREGATORS:
            raise ConfigError(f"fl.robust_aggregator={self.name!r}: expected one of {AGGREGATORS}")
        if not self.norm_ratio >= 1:
            raise ConfigError(f"fl.robust_norm_ratio={self.norm_ratio!r}: expected a number >= 1")
        if self.clip_start not in CLIP_STARTS:
            raise ConfigError(
                f"fl.robust_clip_start={self.clip_start!r}: expected one of {CLIP_STARTS}"
            )

    def selected(self, updates: UpdateMatrix) -> np.ndarray:
        """Krum / Multi-Krum: indices of the kept updates, best first."""
        scores = krum_scores(pairwise_sq_distances(updates), self.byzantine)
        m = 1 if self.name == "krum" else (self.select or updates.n_clients - self.byzantine)
        return np.argsort(scores, kind="stable")[: max(1, min(m, updates.n_clients))]

    def kept(self, updates: UpdateMatrix) -> np.ndarray:
        """Norm filter: indices of the updates no longer than ``norm_ratio`` x the median norm."""
        return _within_norm_ratio(update_norms(updates), self.norm_ratio)

    def aggregate(self, updates: UpdateMatrix) -> np.ndarray:
        """The aggregated delta (float64, one value per column of ``updates``)."""
        if self.name == "none":
            return _sender_mean(updates)
        if self.name == "median":
            return _median(updates.masked())
        if self.name == "trimmed-mean":
            return _trimmed_mean(updates.masked(), self.trim)
        if self.name in ("krum", "multikrum"):
            return _sender_mean(updates, self.selected(updates))
        if self.name == "norm-filter":  # the kept updates, bounded by their median norm
            norms = update_norms(updates)
            rows = _within_norm_ratio(norms, self.norm_ratio)
            bound = float(np.median(norms[rows]))
            scale = np.minimum(1.0, bound / np.maximum(norms[rows], 1e-12))
            return _sender_mean(updates, rows, scale)
        return _centered_clip(updates, self.clip_radius, self.clip_iterations, self.clip_start)
