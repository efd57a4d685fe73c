"""Diversifiers: greedy objectives that pick the top-K one item at a time.

Both take the re-ranker's score of each candidate, min-max normalised to ``[0, 1]`` over the
candidates left after the filters (the *relevance*), and trade it against a list-level term:

* :class:`MMR` — maximal marginal relevance (Carbonell & Goldstein, 1998) over the items' content
  vectors: ``lambda_ * rel(i) - (1 - lambda_) * max_{j in list} cos(i, j)``;
* :class:`Calibration` — calibrated recommendations (Steck, 2018): the list's category mix should
  match the user's history, ``(1 - lambda_) * rel(i) - lambda_ * KL(p || q~(list + i))`` with
  ``q~ = (1 - alpha) q + alpha p``.

Note the papers' opposite conventions, kept here: in MMR ``lambda_ = 1`` is pure relevance, in
Calibration ``lambda_ = 0`` is.

A diversifier is driven by :func:`ranking.rules.selection.select` through :meth:`Diversifier.start`
(returns a state, or a reason why it cannot act on this request), :meth:`Diversifier.objective`
and :meth:`Diversifier.update`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ranking.rules.base import RerankContext, Rule

__all__ = ["MMR", "Calibration", "Diversifier"]


class Diversifier(Rule):
    """Base class of the greedy list objectives."""

    kind: ClassVar[str] = "diversifier"

    def start(
        self, items: np.ndarray, relevance: np.ndarray, seeds: np.ndarray, context: RerankContext
    ) -> dict[str, Any] | str:
        """State over the pool ``items`` (with ``relevance``), given the already placed ``seeds``
        (pinned item ids); or a string saying why this request cannot be diversified."""
        raise NotImplementedError

    def objective(self, state: dict[str, Any]) -> np.ndarray:
        """``float64 [n]``: the value of adding each pool item to the list next."""
        raise NotImplementedError

    def update(self, state: dict[str, Any], index: int) -> None:
        """Record that pool item ``index`` was added."""
        raise NotImplementedError

    def detail(self, state: dict[str, Any], index: int) -> dict[str, float]:
        """Numbers that explain why pool item ``index`` was chosen (before :meth:`update`)."""
        return {}


class MMR(Diversifier):
    """Maximal marginal relevance over the item vectors (cosine similarity).

    Parameters
    ----------
    lambda_:
        Weight of relevance in ``[0, 1]``; ``1`` keeps the score order, ``0`` picks the item least
        similar to the list so far.
    """

    name: ClassVar[str] = "mmr"

    def __init__(self, lambda_: float = 0.7) -> None:
        self.lambda_ = self._unit("lambda_", lambda_)

    def skip_reason(self, context: RerankContext) -> str | None:
        if context.item_vectors is None:
            return "no item vectors were given"
        return None

    def start(
        self, items: np.ndarray, relevance: np.ndarray, seeds: np.ndarray, context: RerankContext
    ) -> dict[str, Any] | str:
        vectors = context.item_vectors
        assert vectors is not None
        pool = vectors[items].astype(np.float64)
        norms = np.linalg.norm(pool, axis=1, keepdims=True)
        pool /= np.where(norms > 0, norms, 1.0)
        max_sim = np.zeros(len(items))
        if seeds.size:
            seed_vecs = vectors[seeds].astype(np.float64)
            seed_vecs /= np.maximum(np.linalg.norm(seed_vecs, axis=1, keepdims=True), 1e-12)
            max_sim = (pool @ seed_vecs.T).max(axis=1)
        return {"pool": pool, "rel": relevance, "max_sim": max_sim, "any": bool(seeds.size)}

    def objective(self, state: dict[str, Any]) -> np.ndarray:
        return self.lambda_ * state["rel"] - (1.0 - self.lambda_) * state["max_sim"]

    def update(self, state: dict[str, Any], index: int) -> None:
        sims = state["pool"] @ state["pool"][index]
        state["max_sim"] = np.maximum(state["max_sim"], sims) if state["any"] else sims
        state["any"] = True

    def detail(self, state: dict[str, Any], index: int) -> dict[str, float]:
        return {
            "relevance": float(state["rel"][index]),
            "max_similarity": float(state["max_sim"][index]) if state["any"] else 0.0,
        }


class Calibration(Diversifier):
    """Calibrates the list's category mix to the user's history (Steck, 2018).

    ``p`` is the category distribution of the history (each item weighs the same), ``q`` that of
    the list being built (each item weighs the same; items of unknown category count in neither).
    Greedily adds the item maximising ``(1 - lambda_) * rel(i) - lambda_ * KL(p || q~)``, where
    ``q~ = (1 - alpha) q + alpha p`` keeps the divergence finite.

    Parameters
    ----------
    lambda_:
        Weight of the miscalibration penalty in ``[0, 1]``; ``0`` keeps the score order.
    alpha:
        Mixing weight of ``p`` into ``q`` in ``(0, 1]`` (Steck uses 0.01).
    """

    name: ClassVar[str] = "calibration"

    def __init__(self, lambda_: float = 0.5, alpha: float = 0.01) -> None:
        self.lambda_ = self._unit("lambda_", lambda_)
        self.alpha = self._number("alpha", alpha, low=0.0, high=1.0, low_open=True)

    def skip_reason(self, context: RerankContext) -> str | None:
        if context.category is None or context.n_categories == 0:
            return "the catalog has no item categories"
        return None

    def start(
        self, items: np.ndarray, relevance: np.ndarray, seeds: np.ndarray, context: RerankContext
    ) -> dict[str, Any] | str:
        category = context.category
        assert category is not None
        n_cat = context.n_categories
        hist = category[context.history[(context.history >= 0) & (context.history < len(category))]]
        hist = hist[hist >= 0]
        if hist.size == 0:
            return "the user's history has no item with a known category"
        p = np.bincount(hist, minlength=n_cat).astype(np.float64) / hist.size
        support = np.flatnonzero(p)
        seed_cats = category[seeds] if seeds.size else np.empty(0, np.int32)
        counts = np.bincount(seed_cats[seed_cats >= 0], minlength=n_cat).astype(np.float64)
        return {
            "rel": relevance,
            "cat": category[items],
            "p": p[support],
            "support": support,
            "counts": counts,
            "kl_now": 0.0,
        }

    def _kl(self, p: np.ndarray, counts: np.ndarray, total: float) -> np.ndarray:
        """Per-category terms ``p log(p / q~)`` over the support."""
        q = counts / total if total > 0 else np.zeros_like(counts)
        return p * np.log(p / ((1.0 - self.alpha) * q + self.alpha * p))

    def objective(self, state: dict[str, Any]) -> np.ndarray:
        p, support, counts = state["p"], state["support"], state["counts"]
        total = counts.sum()
        base = self._kl(p, counts[support], total + 1.0)  # list + one item outside the support
        bumped = self._kl(p, counts[support] + 1.0, total + 1.0)  # ... or inside, per category
        kl_by_cat = np.full(len(counts), base.sum())
        kl_by_cat[support] += bumped - base
        kl_now = float(self._kl(p, counts[support], total).sum())
        state["kl_now"] = kl_now
        cat = state["cat"]
        kl = np.where(cat >= 0, kl_by_cat[np.maximum(cat, 0)], kl_now)
        state["kl_next"] = kl
        return (1.0 - self.lambda_) * state["rel"] - self.lambda_ * kl

    def update(self, state: dict[str, Any], index: int) -> None:
        code = state["cat"][index]
        if code >= 0:
            state["counts"][code] += 1.0

    def detail(self, state: dict[str, Any], index: int) -> dict[str, float]:
        return {
            "relevance": float(state["rel"][index]),
            "kl_before": float(state["kl_now"]),
            "kl_after": float(state["kl_next"][index]),
        }
