"""Boosts: a value in ``[0, 1]`` per candidate that a re-ranker adds to the score with a weight.

Every boost is normalised over the **whole catalog** (not per request), so that a value reads the
same in every explanation ("price in the top tenth of the catalog") and adding or removing one
candidate does not move the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from ranking.rules.base import Boost, RerankContext

__all__ = ["BusinessValueBoost", "FreshnessBoost", "PopularityBoost"]


class FreshnessBoost(Boost):
    """Newer items score higher: ``0.5 ** (age / half_life)``, ``age = now - created_at``.

    Parameters
    ----------
    half_life:
        Age at which the boost halves, in the unit of ``created_at`` (seconds for the synthetic
        world and the tabular readers).
    weight, label:
        See :class:`~ranking.rules.base.Boost`.

    ``now`` is the request time (:attr:`RerankContext.now`) or, when the request has none, the
    newest creation time in the catalog. Items created after ``now`` count as brand new (1.0).
    """

    name: ClassVar[str] = "freshness"

    def __init__(
        self, half_life: float = 604_800.0, weight: float = 1.0, label: str | None = None
    ) -> None:
        super().__init__(weight, label)
        self.half_life = self._number("half_life", half_life, low=0.0, low_open=True)

    def skip_reason(self, context: RerankContext) -> str | None:
        if context.created_at is None:
            return "the catalog has no creation times (created_at)"
        return None

    def values(self, items: np.ndarray, context: RerankContext) -> np.ndarray:
        created = context.created_at
        assert created is not None
        now = context.now
        if now is None:
            now = context.cache.get("created_at_max")
            if now is None:
                now = context.cache["created_at_max"] = float(created.max())
        age = np.maximum(now - created[items], 0.0)
        return np.exp2(-age / self.half_life)

    def describe(self, value: float) -> str:
        age = -np.log2(max(value, 1e-300)) * self.half_life
        return f"{value:.2f} (age {age:.3g})"


class PopularityBoost(Boost):
    """Popular items score higher: ``log1p(count) / log1p(max count)`` over the catalog.

    Parameters
    ----------
    weight, label:
        See :class:`~ranking.rules.base.Boost`.
    """

    name: ClassVar[str] = "popularity"

    def skip_reason(self, context: RerankContext) -> str | None:
        if context.popularity is None:
            return "no item popularity counts were given"
        if float(context.popularity.max(initial=0.0)) <= 0:
            return "every item has popularity 0"
        return None

    def values(self, items: np.ndarray, context: RerankContext) -> np.ndarray:
        assert context.popularity is not None
        scale = context.cache.get("log_popularity_max")
        if scale is None:
            scale = context.cache["log_popularity_max"] = float(np.log1p(context.popularity.max()))
        return np.log1p(np.maximum(context.popularity[items], 0.0)) / scale

    def describe(self, value: float) -> str:
        return f"{value:.2f}"


class BusinessValueBoost(Boost):
    """A catalog attribute (price, margin, ...) min-max normalised over the catalog.

    Parameters
    ----------
    attribute:
        Name of the column in ``catalog.attributes``.
    value_map:
        For a string column, the numeric value of each string (e.g. ``{budget: 0, premium: 2}``);
        strings not listed count as the lowest value. Not needed for a numeric column.
    invert:
        ``True`` when lower is better (e.g. a cheaper price): the boost becomes ``1 - value``.
    weight, label:
        See :class:`~ranking.rules.base.Boost`.

    Missing numeric values (NaN) get boost 0. The rule is skipped when the catalog has no such
    attribute, when a string attribute has no ``value_map``, or when the column is constant.
    """

    name: ClassVar[str] = "business_value"

    def __init__(
        self,
        attribute: str = "price",
        value_map: Mapping[str, float] | None = None,
        invert: bool = False,
        weight: float = 1.0,
        label: str | None = None,
    ) -> None:
        super().__init__(weight, label)
        if not isinstance(attribute, str) or not attribute:
            raise self._error("attribute", f"must be a non-empty string, got {attribute!r}")
        if not isinstance(invert, bool):
            raise self._error("invert", f"must be true or false, got {invert!r}")
        self.attribute = attribute
        self.invert = invert
        self.value_map: dict[str, float] | None = None
        if value_map is not None:
            if not isinstance(value_map, Mapping):
                raise self._error("value_map", f"must map strings to numbers, got {value_map!r}")
            self.value_map = {
                str(k): self._number(f"value_map[{k!r}]", v) for k, v in value_map.items()
            }

    def _column(self, context: RerankContext) -> np.ndarray | str:
        """The normalised column (cached per catalog), or why there is none."""
        key = f"business_value:{self.attribute}:{sorted((self.value_map or {}).items())}"
        if key in context.cache:
            return context.cache[key]
        raw = context.attributes.get(self.attribute)
        out: np.ndarray | str
        if raw is None:
            out = f"the catalog has no attribute {self.attribute!r}"
        else:
            raw = np.asarray(raw)
            if raw.dtype.kind in "biuf":
                col = raw.astype(np.float64)
            elif self.value_map is None:
                out = f"attribute {self.attribute!r} is not numeric (give `value_map`)"
                context.cache[key] = out
                return out
            else:
                low = min(self.value_map.values(), default=0.0)
                col = np.array([self.value_map.get(str(v), low) for v in raw.tolist()], np.float64)
            finite = col[np.isfinite(col)]
            if finite.size == 0 or finite.min() == finite.max():
                out = f"attribute {self.attribute!r} has the same value for every item"
            else:
                out = np.nan_to_num((col - finite.min()) / (finite.max() - finite.min()), nan=0.0)
        context.cache[key] = out
        return out

    def skip_reason(self, context: RerankContext) -> str | None:
        col = self._column(context)
        return col if isinstance(col, str) else None

    def values(self, items: np.ndarray, context: RerankContext) -> np.ndarray:
        col = self._column(context)
        assert not isinstance(col, str)
        out = col[items]
        return 1.0 - out if self.invert else out
