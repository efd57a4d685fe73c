"""The five re-rankers, their registry and :func:`build_reranker` (see :mod:`ranking.hybrid`)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ranking.errors import ConfigError
from ranking.hybrid.base import NORMALISERS, Reranker, normalise_scores
from ranking.rules import RULES, Boost, Rule, plain

__all__ = [
    "RERANKERS",
    "Cascade",
    "Constrained",
    "NeuralOnly",
    "RulesOnly",
    "WeightedBlend",
    "build_reranker",
]


_NUMBER = (int, float, np.integer, np.floating)


class NeuralOnly(Reranker):
    """The L2 order, top-K, nothing else (the baseline every hybrid is compared with)."""

    name: ClassVar[str] = "neural"
    allowed: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        super().__init__(())


class Constrained(Reranker):
    """The L2 order subject to hard rules only: filters, category caps and pins."""

    name: ClassVar[str] = "constrained"
    allowed: ClassVar[frozenset[str]] = frozenset({"filter", "cap", "pin"})


class RulesOnly(Reranker):
    """Rules without the L2 model: the weighted boosts order the candidates, the L1 order breaks
    ties (with no boost, the list is the filtered, capped, pinned L1 order)."""

    name: ClassVar[str] = "rules"
    uses_l2: ClassVar[bool] = False

    def _score(
        self,
        rows: np.ndarray,
        l2: np.ndarray,
        ranks: np.ndarray,
        valid: np.ndarray,
        boost_sum: np.ndarray,
        components: dict[str, tuple[float, np.ndarray]],
    ) -> tuple[np.ndarray, np.ndarray]:
        return boost_sum, ranks[rows]


class WeightedBlend(Reranker):
    """``weights["l2"] * normalise(L2) + sum of weight * boost``, then caps, pins, diversifier.

    Parameters
    ----------
    weights:
        ``{"l2": w, <boost label>: w, ...}``. ``l2`` defaults to 1. A boost's weight here takes
        precedence over its own ``weight``; a boost named here that is not among ``rules`` is
        added with its default settings (``{"l2": 1, "popularity": 0.2}`` is a whole blend).
    normalise:
        How the L2 scores of a request are made comparable with the ``[0, 1]`` boosts:
        ``minmax``, ``zscore`` or ``rank`` (:func:`normalise_scores`), over the request's valid
        candidates before the filters (so a filter does not move the other items' scores).
    rules:
        See :class:`Reranker`.
    """

    name: ClassVar[str] = "blend"

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        normalise: str = "minmax",
        rules: Sequence[Mapping[str, Any] | Rule] = (),
    ) -> None:
        given = plain(weights) if weights is not None else {"l2": 1.0}
        if not isinstance(given, Mapping):
            raise self._error(
                "weights", f"must map 'l2' and boost labels to numbers, got {weights!r}"
            )
        if normalise not in NORMALISERS:
            raise self._error(
                "normalise", f"must be one of {', '.join(NORMALISERS)}, got {normalise!r}"
            )
        for key, value in given.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, _NUMBER)
                or not math.isfinite(value)
            ):
                raise self._error(f"weights[{key!r}]", f"must be a finite number, got {value!r}")
        if isinstance(rules, Mapping | str) or not hasattr(rules, "__iter__"):
            raise self._error("rules", f"must be a list of rules, got {rules!r}")
        rules = list(rules)
        super().__init__(rules)
        labels = {b.label for b in self.boosts}
        for key in given:
            if key == "l2" or key in labels:
                continue
            if RULES.get(key) is not None and issubclass(RULES[key], Boost):
                boost = RULES[key]()
                self.rules.append(boost)
                self.boosts.append(boost)
                continue
            known = ", ".join(["l2", *sorted(labels)])
            raise self._error(
                "weights", f"has unknown key {key!r} (known: {known}, or a boost name)"
            )
        self._given_rules = len(rules)
        self._given_weights = dict(given)
        self.normalise = normalise
        self.weights = {b.label: float(given.get(b.label, b.weight)) for b in self.boosts}
        self.l2_weight = float(given.get("l2", 1.0))

    def settings(self) -> dict[str, Any]:
        return {"weights": dict(self._given_weights), "normalise": self.normalise}

    def spec(self) -> dict[str, Any]:
        out = super().spec()
        out["rules"] = out["rules"][: self._given_rules]
        return out

    def _score(
        self,
        rows: np.ndarray,
        l2: np.ndarray,
        ranks: np.ndarray,
        valid: np.ndarray,
        boost_sum: np.ndarray,
        components: dict[str, tuple[float, np.ndarray]],
    ) -> tuple[np.ndarray, np.ndarray]:
        norm = np.full(len(l2), np.nan)
        norm[valid] = normalise_scores(l2[valid], self.normalise)
        components["l2"] = (self.l2_weight, norm)
        components.update({k: components.pop(k) for k in list(components) if k != "l2"})
        return self.l2_weight * norm[rows] + boost_sum, ranks[rows]


class Cascade(Reranker):
    """The L2 top ``top_n``, then the rules order (and filter) them.

    Among the shortlist the weighted boosts decide the order, the L2 order breaking ties (with no
    boost, the list is the filtered, capped, pinned L2 order).

    Parameters
    ----------
    top_n:
        Shortlist length (``>= k``).
    rules:
        See :class:`Reranker`.
    """

    name: ClassVar[str] = "cascade"

    def __init__(self, top_n: int = 50, rules: Sequence[Mapping[str, Any] | Rule] = ()) -> None:
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise self._error("top_n", f"must be an integer >= 1, got {top_n!r}")
        self.top_n = top_n
        super().__init__(rules)

    def settings(self) -> dict[str, Any]:
        return {"top_n": self.top_n}

    def check(self, k: int) -> None:
        super().check(k)
        if self.top_n < k:
            raise self._error(
                "top_n", f"{self.top_n} is below k={k}: the list could never be filled"
            )

    def _shortlist(self, valid: np.ndarray, l2: np.ndarray, k: int) -> tuple[np.ndarray, str]:
        rows = np.flatnonzero(valid)
        if rows.size <= self.top_n:
            return valid, ""
        keep = rows[np.argsort(-l2[rows], kind="stable")[: self.top_n]]
        out = np.zeros_like(valid)
        out[keep] = True
        return out, f"outside the L2 top {self.top_n} (cascade top_n)"

    def _score(
        self,
        rows: np.ndarray,
        l2: np.ndarray,
        ranks: np.ndarray,
        valid: np.ndarray,
        boost_sum: np.ndarray,
        components: dict[str, tuple[float, np.ndarray]],
    ) -> tuple[np.ndarray, np.ndarray]:
        l2_rank = np.empty(rows.size, dtype=np.int64)
        l2_rank[np.lexsort((ranks[rows], -l2[rows]))] = np.arange(rows.size)
        return boost_sum, l2_rank


RERANKERS: dict[str, type[Reranker]] = {
    cls.name: cls for cls in (NeuralOnly, RulesOnly, WeightedBlend, Cascade, Constrained)
}
"""Re-ranker classes by name (the ``name`` of a re-ranker spec)."""


def build_reranker(spec: Mapping[str, Any] | Reranker) -> Reranker:
    """A re-ranker from ``{"name": ..., **settings, "rules": [...]}`` (or a built one, as is).

    Rules may be ``{"name": ..., **settings}`` mappings or already built rule objects (e.g. from
    Hydra ``_target_``). An OmegaConf ``DictConfig`` works as the mapping.

    Raises
    ------
    ConfigError
        Naming an unknown re-ranker, an unknown key, an unknown rule or an invalid setting.
    """
    if isinstance(spec, Reranker):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a reranker spec must be a mapping {{name: ..., ...}}, got {spec!r}")
    settings = {str(k): v for k, v in spec.items()}
    name = settings.pop("name", None)
    if name is None:
        raise ConfigError(f"reranker spec has no 'name' (one of {', '.join(sorted(RERANKERS))})")
    cls = RERANKERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(
            f"unknown reranker {name!r}; known rerankers: {', '.join(sorted(RERANKERS))}"
        )
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in settings:
        if key not in params:
            raise ConfigError(
                f"reranker {name!r}: unknown key {key!r} "
                f"(known keys: {', '.join(params) or 'none'})"
            )
    if "rules" in settings:
        rules = settings["rules"]
        if isinstance(rules, Mapping | str) or not hasattr(rules, "__iter__"):
            raise ConfigError(f"reranker {name!r}: rules must be a list, got {rules!r}")
        settings["rules"] = [r if isinstance(r, Rule) else plain(r) for r in rules]
    if "weights" in settings and settings["weights"] is not None:
        settings["weights"] = plain(settings["weights"])
    return cls(**settings)
