"""Rules that shape the top-K list, and the greedy selection that applies them.

:func:`select` fills the ``K`` slots of a request from the candidates left after the filters,
sorted best first:

1. **pins** are placed first; a pinned item counts for the caps and for the diversifier, so the
   rest of the list is built around it (pins win over caps);
2. the other slots are filled greedily: the next item is the one with the highest score (or, with
   a diversifier, the highest diversifier objective) whose category is not yet full. An item passed
   over because its category is full is recorded as removed by the cap;
3. the pinned items are inserted at their positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ranking.errors import ConfigError
from ranking.rules.base import Filter, HardRule, RerankContext, Rule, Trace
from ranking.rules.diversity import Diversifier

__all__ = ["CategoryCap", "Pin", "check_pins", "select"]


class CategoryCap(HardRule):
    """At most ``max_per_category`` items of one category in the top K.

    Items of unknown category (``-1``) are never capped.

    Parameters
    ----------
    max_per_category:
        The cap, an integer ``>= 1``.
    """

    name: ClassVar[str] = "category_cap"
    kind: ClassVar[str] = "cap"

    def __init__(self, max_per_category: int = 2) -> None:
        self.max_per_category = self._integer("max_per_category", max_per_category, low=1)

    def skip_reason(self, context: RerankContext) -> str | None:
        if context.category is None:
            return "the catalog has no item categories"
        return None

    def violations(self, items: np.ndarray, context: RerankContext) -> bool:
        if context.category is None:
            return False
        items = np.asarray(items, dtype=np.int64)
        cats = context.category[items[items >= 0]]
        cats = cats[cats >= 0]
        return bool(cats.size) and int(np.bincount(cats).max()) > self.max_per_category


class Pin(Rule):
    """Puts ``item`` at ``position`` (0-based) of the top K.

    Parameters
    ----------
    item:
        Dense item id.
    position:
        Slot in ``[0, K)``; a position at or beyond ``K`` raises :class:`ConfigError` when the
        re-ranker is called for that ``K``. When fewer items than ``position`` are listed, the
        item goes last.
    always:
        ``False`` (default): the pin acts only when the item is among the request's candidates
        (an organic item promoted to a slot). ``True``: the item is inserted even when L1 did not
        retrieve it (a sponsored slot). Either way a pinned item that a filter removes (already
        seen, unavailable, blocked) is **not** placed: filters win over pins.
    """

    name: ClassVar[str] = "pin"
    kind: ClassVar[str] = "pin"

    def __init__(self, item: int, position: int = 0, always: bool = False) -> None:
        self.item = self._integer("item", item, low=0)
        self.position = self._integer("position", position, low=0)
        if not isinstance(always, bool):
            raise self._error("always", f"must be true or false, got {always!r}")
        self.always = always

    @property
    def label(self) -> str:
        return f"pin(item={self.item}, position={self.position})"

    def check(self, k: int) -> None:
        """Raise :class:`ConfigError` unless ``position`` lies in ``[0, k)``."""
        if self.position >= k:
            raise self._error("position", f"{self.position} is outside the top-K slots [0, {k})")


def check_pins(pins: Sequence[Pin]) -> None:
    """Two pins may share neither a position nor an item."""
    for key in ("position", "item"):
        values = [getattr(p, key) for p in pins]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ConfigError(f"rule 'pin': two pins share the {key} {dupes[0]}")


def _place_pins(
    items: np.ndarray,
    pins: Sequence[Pin],
    filters: Sequence[Filter],
    context: RerankContext,
    trace: Trace,
) -> list[tuple[int, int, int]]:
    """``(position, item, pool index or -1)`` of every pin that acts on this request."""
    placed = []
    for pin in sorted(pins, key=lambda p: p.position):
        pin.check(context.k)
        found = np.flatnonzero(items == pin.item)
        if found.size:
            placed.append((pin.position, pin.item, int(found[0])))
            continue
        if pin.item in trace.removed:
            rule, reason = trace.removed[pin.item]
            trace.skipped[pin.label] = f"item {pin.item} was removed by {rule} ({reason})"
            continue
        if not pin.always:
            trace.skipped[pin.label] = f"item {pin.item} is not among the candidates"
            continue
        if context.n_items is not None and pin.item >= context.n_items:
            trace.skipped[pin.label] = f"item {pin.item} is not in the catalog"
            continue
        blocked = [f for f in filters if not f.keep(np.array([pin.item]), context)[0]]
        if blocked:
            reason = blocked[0].reason(pin.item, context)
            trace.skipped[pin.label] = (
                f"item {pin.item} was removed by {blocked[0].label} ({reason})"
            )
            continue
        placed.append((pin.position, pin.item, -1))
    return placed


def select(
    items: np.ndarray,
    relevance: np.ndarray,
    context: RerankContext,
    trace: Trace,
    *,
    caps: Sequence[CategoryCap] = (),
    pins: Sequence[Pin] = (),
    diversifier: Diversifier | None = None,
    filters: Sequence[Filter] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """The top-K of a request.

    Parameters
    ----------
    items:
        ``int64 [n]`` the candidates left after the filters, best first.
    relevance:
        ``float64 [n]`` their scores normalised to ``[0, 1]`` (non-increasing).
    context:
        The request (``context.k`` slots).
    trace:
        Receives capped items, pin and diversifier notes, and skipped rules.
    caps, pins, diversifier:
        The selection rules that act on this request (skipped ones already left out).
    filters:
        The request's filters, checked against pinned items that are not candidates.

    Returns
    -------
    (index, listed):
        ``int64 [m]`` index into ``items`` of each listed item (``-1`` for a pinned item that is
        not a candidate) and ``int64 [m]`` the listed item ids, ``m <= k``.
    """
    placed = _place_pins(items, pins, filters, context, trace)
    pool = np.ones(len(items), dtype=bool)
    for _, _, index in placed:
        if index >= 0:
            pool[index] = False
    n_free = context.k - len(placed)
    seeds = np.array([item for _, item, _ in placed], dtype=np.int64)

    state = None
    if diversifier is not None:
        state = diversifier.start(items, relevance, seeds, context)
        if isinstance(state, str):
            trace.skipped[diversifier.label] = state
            diversifier, state = None, None

    limit, cap_label, cats, counts = 0, "", np.empty(0, np.int32), np.empty(0)
    if caps:
        tightest = min(caps, key=lambda c: c.max_per_category)
        limit, cap_label = tightest.max_per_category, tightest.label
        category = context.category
        assert category is not None
        cats = category[items]
        seed_cats = category[seeds] if seeds.size else np.empty(0, np.int32)
        counts = np.bincount(seed_cats[seed_cats >= 0], minlength=max(context.n_categories, 1))
        counts = counts.astype(np.int64)

    if diversifier is None and not limit:
        chosen = np.flatnonzero(pool)[: max(n_free, 0)].tolist()
    else:
        chosen = []
        for _ in range(max(n_free, 0)):
            objective = relevance if diversifier is None else diversifier.objective(state)
            objective = np.where(pool, objective, -np.inf)
            pick = int(np.argmax(objective))
            while (
                objective[pick] != -np.inf
                and limit
                and cats[pick] >= 0
                and counts[cats[pick]] >= limit
            ):
                name = context.category_name(int(cats[pick]))
                reason = f"category {name!r} already has {limit} items in the list"
                trace.removed[int(items[pick])] = (cap_label, reason)
                pool[pick] = False
                objective[pick] = -np.inf
                pick = int(np.argmax(objective))
            if objective[pick] == -np.inf:
                break
            if diversifier is not None:
                eligible = (
                    pool
                    if not limit
                    else pool & ~((cats >= 0) & (counts[np.maximum(cats, 0)] >= limit))
                )
                plain = int(np.argmax(eligible))
                if plain != pick:
                    detail = diversifier.detail(state, pick)
                    trace.note(
                        int(items[pick]),
                        diversifier.label,
                        "reordered",
                        over=int(items[plain]),
                        **detail,
                    )
                diversifier.update(state, pick)
            pool[pick] = False
            chosen.append(pick)
            if limit and cats[pick] >= 0:
                counts[cats[pick]] += 1

    index = list(chosen)
    listed = items[np.asarray(chosen, dtype=np.int64)].tolist()
    for position, item, pool_index in placed:
        at = min(position, len(index))
        index.insert(at, pool_index)
        listed.insert(at, item)
        label = next(p.label for p in pins if p.item == item)
        trace.note(
            item, label, "pinned", position=at, requested=position, candidate=pool_index >= 0
        )
    return np.asarray(index, dtype=np.int64), np.asarray(listed, dtype=np.int64)
