"""The base of every re-ranker: the stages shared by the hybrids of :mod:`ranking.hybrid`.

A re-ranker answers **one request** (see :meth:`Reranker.__call__`):

1. the **filters** remove candidates (each removal is recorded with its rule);
2. the survivors get a **score** (:meth:`Reranker._score`, the part that differs between
   re-rankers) and are sorted, ties going to the better L1 rank;
3. **pins, caps and the diversifier** build the top-K greedily (:func:`ranking.rules.select`).

Diversifiers take as relevance the final score, min-max normalised over the survivors (the score
order's ranks when every score is equal).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ranking.errors import ConfigError
from ranking.hybrid.reranked import CandidateTable, Reranked
from ranking.rules import (
    Boost,
    CategoryCap,
    Diversifier,
    Filter,
    HardRule,
    Pin,
    RerankContext,
    Rule,
    Trace,
    build_rule,
    check_pins,
    select,
)

__all__ = ["NORMALISERS", "Reranker", "normalise_scores"]

NORMALISERS = ("minmax", "zscore", "rank")


def normalise_scores(scores: np.ndarray, how: str = "minmax") -> np.ndarray:
    """Scores of one request made comparable with boosts.

    ``minmax`` maps to ``[0, 1]`` (all 1 when every score is equal), ``zscore`` to mean 0 and
    standard deviation 1 (all 0 when equal), ``rank`` to ``1 - rank / (n - 1)`` (best 1, worst 0,
    ties in the given order).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    if how == "minmax":
        low, high = s.min(), s.max()
        return (s - low) / (high - low) if high > low else np.ones_like(s)
    if how == "zscore":
        std = s.std()
        return (s - s.mean()) / std if std > 0 else np.zeros_like(s)
    if how == "rank":
        out = np.empty_like(s)
        out[np.argsort(-s, kind="stable")] = 1.0 - np.arange(s.size) / max(s.size - 1, 1)
        return out
    raise ConfigError(f"normalise must be one of {', '.join(NORMALISERS)}, got {how!r}")


class Reranker:
    """Base class: the stages every re-ranker shares (see the module docstring).

    Parameters
    ----------
    rules:
        Rules as built objects or ``{"name": ..., **settings}`` mappings
        (:data:`ranking.rules.RULES`).
    """

    name: ClassVar[str] = "reranker"
    allowed: ClassVar[frozenset[str]] = frozenset({"filter", "boost", "cap", "pin", "diversifier"})
    uses_l2: ClassVar[bool] = True

    def __init__(self, rules: Sequence[Mapping[str, Any] | Rule] = ()) -> None:
        if isinstance(rules, Mapping | str) or not hasattr(rules, "__iter__"):
            raise self._error("rules", f"must be a list of rules, got {rules!r}")
        self.rules: list[Rule] = [build_rule(r) for r in rules]
        for rule in self.rules:
            if rule.kind not in self.allowed:
                kinds = ", ".join(sorted(self.allowed)) or "no rules"
                raise self._error(
                    "rules", f"cannot hold {rule.kind} rule {rule.name!r} (it takes {kinds})"
                )
        self.filters = [r for r in self.rules if isinstance(r, Filter)]
        self.boosts = [r for r in self.rules if isinstance(r, Boost)]
        self.caps = [r for r in self.rules if isinstance(r, CategoryCap)]
        self.pins = [r for r in self.rules if isinstance(r, Pin)]
        diversifiers = [r for r in self.rules if isinstance(r, Diversifier)]
        if len(diversifiers) > 1:
            names = ", ".join(d.name for d in diversifiers)
            raise self._error(
                "rules", f"may hold one diversifier, got {len(diversifiers)} ({names})"
            )
        self.diversifier: Diversifier | None = diversifiers[0] if diversifiers else None
        check_pins(self.pins)
        labels = [b.label for b in self.boosts]
        for label in labels:
            if label == "l2":
                raise self._error("rules", "has a boost labelled 'l2', the name of the L2 score")
            if labels.count(label) > 1:
                raise self._error("rules", f"has two boosts labelled {label!r}; give one a `label`")
        self.weights: dict[str, float] = {b.label: b.weight for b in self.boosts}

    def _error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"reranker {self.name!r}: {key} {message}")

    @property
    def hard_rules(self) -> list[HardRule]:
        """The filters and caps: the rules :func:`ranking.metrics.violation_rate` can check."""
        return [r for r in self.rules if isinstance(r, HardRule)]

    def settings(self) -> dict[str, Any]:
        """The re-ranker's own settings (not its rules) as its spec holds them."""
        return {}

    def spec(self) -> dict[str, Any]:
        """``{"name": ..., **settings, "rules": [...]}``, as :func:`build_reranker` takes it."""
        out = {"name": self.name, **self.settings()}
        if "rules" in inspect.signature(type(self).__init__).parameters:
            out["rules"] = [r.spec() for r in self.rules]
        return out

    def check(self, k: int) -> None:
        """Raise :class:`ConfigError` when the re-ranker cannot serve a top-``k``."""
        for pin in self.pins:
            pin.check(k)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()!r})"

    # ---- one request -----------------------------------------------------------------------

    def __call__(
        self,
        candidates: np.ndarray,
        l2_scores: np.ndarray | None,
        context: RerankContext,
        *,
        l1_ranks: np.ndarray | None = None,
    ) -> Reranked:
        """Re-rank one request.

        Parameters
        ----------
        candidates:
            ``int64 [n]`` L1 candidates, best first, ``-1`` for padding.
        l2_scores:
            ``float32 [n]`` L2 scores (``-inf`` on padding), or ``None`` without an L2 model (the
            L1 order then stands in for them, as in :class:`ranking.pipeline.TwoTierPipeline`).
        context:
            The request: :meth:`RerankContext.for_request` with the user's history and ``k``.
        l1_ranks:
            ``[n]`` L1 rank of each candidate (default: its position in ``candidates``).
        """
        k = int(context.k)
        self.check(k)
        items = np.asarray(candidates, dtype=np.int64).reshape(-1)
        n = items.size
        ranks = np.arange(n, dtype=np.int64) if l1_ranks is None else np.asarray(l1_ranks, np.int64)
        valid = items >= 0
        if l2_scores is None:
            l2 = np.where(valid, -ranks.astype(np.float64), -np.inf)
            shown_l2 = np.full(n, np.nan)
        else:
            l2 = np.asarray(l2_scores, dtype=np.float64).reshape(-1)
            if l2.shape != items.shape:
                raise ValueError(f"l2_scores has shape {l2.shape}, candidates {items.shape}")
            shown_l2 = np.where(np.isfinite(l2), l2, np.nan)
            if self.uses_l2:
                valid &= np.isfinite(l2)
        trace = Trace()
        valid, excluded = self._shortlist(valid, l2, k)

        keep = valid.copy()
        for rule in self.filters:
            reason = rule.skip_reason(context)
            if reason is not None:
                trace.skipped[rule.label] = reason
                continue
            rows = np.flatnonzero(keep)
            kept = rule.keep(items[rows], context)
            for row in rows[~kept].tolist():
                trace.removed[int(items[row])] = (rule.label, rule.reason(int(items[row]), context))
            keep[rows[~kept]] = False
        rows = np.flatnonzero(keep)

        components: dict[str, tuple[float, np.ndarray]] = {}
        boost_sum = np.zeros(rows.size)
        for boost in self.boosts:
            reason = boost.skip_reason(context)
            if reason is not None:
                trace.skipped[boost.label] = reason
                continue
            values = np.full(n, np.nan)
            values[rows] = boost.values(items[rows], context)
            weight = self.weights[boost.label]
            components[boost.label] = (weight, values)
            boost_sum += weight * values[rows]
        score, tiebreak = self._score(rows, l2, ranks, valid, boost_sum, components)

        order = np.lexsort((tiebreak, -score))
        pool_rows = rows[order]
        pool_scores = score[order]
        relevance = normalise_scores(pool_scores, "minmax")
        if pool_scores.size > 1 and pool_scores[0] == pool_scores[-1]:
            relevance = 1.0 - np.arange(pool_scores.size) / (pool_scores.size - 1)

        active = [r for r in (*self.caps, *self.pins, self.diversifier) if r is not None]
        for rule in active:
            reason = rule.skip_reason(context)
            if reason is not None:
                trace.skipped[rule.label] = reason
        acting = [r for r in active if r.label not in trace.skipped]
        index, listed = select(
            items[pool_rows],
            relevance,
            context,
            trace,
            caps=[r for r in acting if isinstance(r, CategoryCap)],
            pins=[r for r in acting if isinstance(r, Pin)],
            diversifier=self.diversifier if self.diversifier in acting else None,
            filters=[f for f in self.filters if f.label not in trace.skipped],
        )

        scores_full = np.full(n, np.nan)
        scores_full[pool_rows] = pool_scores
        score_rank = np.full(n, -1, dtype=np.int64)
        score_rank[pool_rows] = np.arange(pool_rows.size)
        picked = np.where(index >= 0, pool_rows[np.maximum(index, 0)] if pool_rows.size else 0, -1)
        is_cand = picked >= 0
        table = CandidateTable(
            items=items,
            l1_ranks=ranks,
            l2_scores=shown_l2,
            scores=scores_full,
            score_rank=score_rank,
            components=components,
            removed=trace.removed,
            notes=trace.notes,
            excluded=excluded,
        )
        return Reranked(
            items=listed,
            scores=np.where(is_cand, scores_full[np.maximum(picked, 0)], np.nan).astype(np.float32),
            l1_ranks=np.where(is_cand, ranks[np.maximum(picked, 0)], -1),
            l2_scores=np.where(is_cand, shown_l2[np.maximum(picked, 0)], np.nan).astype(np.float32),
            k=k,
            reranker=self.name,
            skipped=trace.skipped,
            table=table,
        )

    # ---- hooks -------------------------------------------------------------------------------

    def _shortlist(self, valid: np.ndarray, l2: np.ndarray, k: int) -> tuple[np.ndarray, str]:
        """The candidates that may be scored at all, and why the others were not (if any)."""
        return valid, ""

    def _score(
        self,
        rows: np.ndarray,
        l2: np.ndarray,
        ranks: np.ndarray,
        valid: np.ndarray,
        boost_sum: np.ndarray,
        components: dict[str, tuple[float, np.ndarray]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(score, tie-break)`` of the surviving candidates ``rows`` (higher score first, then
        lower tie-break); may add score parts to ``components``."""
        return l2[rows], ranks[rows]
