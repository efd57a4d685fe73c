"""Business rules for the re-ranking stage: filters, boosts, caps, pins and diversifiers.

Every rule is built from plain keyword arguments, by Hydra (``_target_: ranking.rules.MMR``) or by
:func:`build_rule` from a ``{"name": ..., **settings}`` mapping looked up in :data:`RULES` (which
also works inside a Flower client or a serving process, where there is no Hydra).

=====================  ===========  ====================================================
name                   kind         class
=====================  ===========  ====================================================
``seen``               filter       :class:`SeenFilter`
``availability``       filter       :class:`AvailabilityFilter`
``block_list``         filter       :class:`BlockList`
``freshness``          boost        :class:`FreshnessBoost`
``popularity``         boost        :class:`PopularityBoost`
``business_value``     boost        :class:`BusinessValueBoost`
``category_cap``       cap          :class:`CategoryCap`
``pin``                pin          :class:`Pin`
``mmr``                diversifier  :class:`MMR`
``calibration``        diversifier  :class:`Calibration`
=====================  ===========  ====================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ranking.errors import ConfigError
from ranking.rules.base import Boost, Filter, HardRule, RerankContext, Rule, Trace, plain
from ranking.rules.boosts import BusinessValueBoost, FreshnessBoost, PopularityBoost
from ranking.rules.diversity import MMR, Calibration, Diversifier
from ranking.rules.filters import AvailabilityFilter, BlockList, SeenFilter
from ranking.rules.selection import CategoryCap, Pin, check_pins, select

__all__ = [
    "MMR",
    "RULES",
    "AvailabilityFilter",
    "BlockList",
    "Boost",
    "BusinessValueBoost",
    "Calibration",
    "CategoryCap",
    "Diversifier",
    "Filter",
    "FreshnessBoost",
    "HardRule",
    "Pin",
    "PopularityBoost",
    "RerankContext",
    "Rule",
    "SeenFilter",
    "Trace",
    "build_rule",
    "check_pins",
    "select",
]

RULES: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (
        SeenFilter,
        AvailabilityFilter,
        BlockList,
        FreshnessBoost,
        PopularityBoost,
        BusinessValueBoost,
        CategoryCap,
        Pin,
        MMR,
        Calibration,
    )
}
"""Rule classes by name (the ``name`` of a rule spec)."""


def build_rule(spec: Mapping[str, Any] | Rule) -> Rule:
    """A rule from ``{"name": ..., **settings}`` (or an already built rule, returned as is).

    Raises
    ------
    ConfigError
        For a spec without ``name``, an unknown name, or a setting the rule does not take,
        naming it; and for any invalid setting (the rule's own checks).
    """
    if isinstance(spec, Rule):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"a rule must be a mapping {{name: ..., <settings>}} or a built rule, got {spec!r}"
        )
    settings = plain(spec)
    name = settings.pop("name", None)
    if name is None:
        raise ConfigError(f"rule spec {settings!r} has no 'name' (one of {sorted(RULES)})")
    cls = RULES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"unknown rule {name!r}; known rules: {', '.join(sorted(RULES))}")
    params = inspect.signature(cls.__init__).parameters
    for key in settings:
        if key not in params or key == "self":
            known = ", ".join(p for p in params if p != "self") or "none"
            raise ConfigError(f"rule {name!r}: unknown key {key!r} (known keys: {known})")
    missing = [
        p.name
        for p in params.values()
        if p.name != "self" and p.default is inspect.Parameter.empty and p.name not in settings
    ]
    if missing:
        raise ConfigError(f"rule {name!r}: missing key {missing[0]!r}")
    return cls(**settings)
