"""Hard filters: candidates a list must never contain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ranking.rules.base import Filter, RerankContext

__all__ = ["AvailabilityFilter", "BlockList", "SeenFilter"]


class SeenFilter(Filter):
    """Drops the items of the user's history (``context.history``)."""

    name: ClassVar[str] = "seen"

    def keep(self, items: np.ndarray, context: RerankContext) -> np.ndarray:
        if context.history.size == 0:
            return np.ones(len(items), dtype=bool)
        return ~np.isin(items, context.history)

    def reason(self, item: int, context: RerankContext) -> str:
        return "already in the user's history"


class AvailabilityFilter(Filter):
    """Drops items whose catalog ``available`` flag is ``False``."""

    name: ClassVar[str] = "availability"

    def skip_reason(self, context: RerankContext) -> str | None:
        if context.available is None:
            return "the catalog has no availability flags (none, or every item available)"
        return None

    def keep(self, items: np.ndarray, context: RerankContext) -> np.ndarray:
        assert context.available is not None
        return context.available[items]

    def reason(self, item: int, context: RerankContext) -> str:
        return "not available"


class BlockList(Filter):
    """Drops the listed items.

    Parameters
    ----------
    items:
        Dense item ids (``0 .. n_items-1``) that must never be recommended.
    """

    name: ClassVar[str] = "block_list"

    def __init__(self, items: Sequence[int] = ()) -> None:
        values = list(items) if not isinstance(items, str) else [items]
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise self._error("items", f"must be dense item ids (integers >= 0), got {value!r}")
        self.items = np.unique(np.asarray(values, dtype=np.int64))

    def keep(self, items: np.ndarray, context: RerankContext) -> np.ndarray:
        if self.items.size == 0:
            return np.ones(len(items), dtype=bool)
        return ~np.isin(items, self.items)

    def reason(self, item: int, context: RerankContext) -> str:
        return "on the block list"
