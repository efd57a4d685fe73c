"""Re-ranking rules: the registry, validation, each rule on hand-built data, greedy selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ranking.data import Catalog
from ranking.errors import ConfigError
from ranking.rules import (
    MMR,
    RULES,
    AvailabilityFilter,
    BlockList,
    BusinessValueBoost,
    Calibration,
    CategoryCap,
    FreshnessBoost,
    Pin,
    PopularityBoost,
    RerankContext,
    SeenFilter,
    Trace,
    build_rule,
    select,
)

CATEGORY = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, -1], dtype=np.int32)


def context(**overrides: object) -> RerankContext:
    """Ten items in three categories (item 9 uncategorised); item 5 is unavailable."""
    settings: dict[str, object] = {
        "n_items": 10,
        "category": CATEGORY,
        "n_categories": 3,
        "category_names": ("mug", "lamp", "hat"),
        "available": np.arange(10) != 5,
        "created_at": np.arange(10, dtype=np.float64) * 10.0,
        "popularity": np.array([99, 9, 0, 1, 2, 3, 4, 5, 6, 7], dtype=np.float64),
        "attributes": {
            "price": np.linspace(10.0, 100.0, 10),
            "band": np.array(
                ["low", "high", "mid", "low", "high", "mid", "low", "high", "mid", "x"]
            ),
            "flat": np.ones(10),
        },
        "k": 3,
    }
    settings.update(overrides)
    return RerankContext(**settings)  # type: ignore[arg-type]


# ---- registry and validation ----------------------------------------------------------------


SPECS = [
    {"name": "seen"},
    {"name": "availability"},
    {"name": "block_list", "items": [1, 2]},
    {"name": "freshness", "half_life": 5.0, "weight": 0.5},
    {"name": "popularity", "weight": 2.0, "label": "pop"},
    {"name": "business_value", "attribute": "band", "value_map": {"low": 0, "high": 2}},
    {"name": "category_cap", "max_per_category": 2},
    {"name": "pin", "item": 3, "position": 1, "always": True},
    {"name": "mmr", "lambda_": 0.25},
    {"name": "calibration", "lambda_": 0.4, "alpha": 0.1},
]


def test_registry_builds_every_rule_and_its_spec_rebuilds_it() -> None:
    assert sorted(RULES) == sorted(s["name"] for s in SPECS)
    for spec in SPECS:
        rule = build_rule(spec)
        assert isinstance(rule, RULES[spec["name"]])
        again = build_rule(rule.spec())
        assert again.spec() == rule.spec()
        for key, value in spec.items():
            assert rule.spec()[key] == value


def test_built_rule_objects_pass_through() -> None:
    rule = MMR(lambda_=0.5)
    assert build_rule(rule) is rule


def test_unknown_rule_name_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="unknown rule 'diversify'"):
        build_rule({"name": "diversify"})
    with pytest.raises(ConfigError, match="no 'name'"):
        build_rule({"lambda_": 0.5})


def test_unknown_rule_key_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="rule 'mmr': unknown key 'lamda'"):
        build_rule({"name": "mmr", "lamda": 0.5})


def test_missing_required_key_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="rule 'pin': missing key 'item'"):
        build_rule({"name": "pin", "position": 0})


def test_cap_below_one_is_a_config_error() -> None:
    for bad in (0, -2, 1.5, "2", True):
        with pytest.raises(
            ConfigError, match="'category_cap': max_per_category must be an integer >= 1"
        ):
            build_rule({"name": "category_cap", "max_per_category": bad})


@pytest.mark.parametrize("name", ["mmr", "calibration"])
@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.7", None])
def test_lambda_outside_the_unit_interval_is_a_config_error(name: str, bad: object) -> None:
    with pytest.raises(ConfigError, match=f"rule '{name}': lambda_"):
        build_rule({"name": name, "lambda_": bad})


@pytest.mark.parametrize("name", ["popularity", "freshness", "business_value"])
def test_non_numeric_boost_weight_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match=f"rule '{name}': weight must be a number, got 'high'"):
        build_rule({"name": name, "weight": "high"})
    with pytest.raises(ConfigError, match=f"rule '{name}': weight must be finite"):
        build_rule({"name": name, "weight": float("nan")})


def test_pin_position_outside_k_is_a_config_error() -> None:
    pin = Pin(item=3, position=5)
    pin.check(6)
    with pytest.raises(
        ConfigError, match=r"rule 'pin': position 5 is outside the top-K slots \[0, 5\)"
    ):
        pin.check(5)
    with pytest.raises(ConfigError, match="rule 'pin': position must be an integer >= 0"):
        Pin(item=3, position=-1)


def test_other_bad_settings_name_rule_and_key() -> None:
    with pytest.raises(ConfigError, match="'freshness': half_life must be > 0"):
        FreshnessBoost(half_life=0)
    with pytest.raises(ConfigError, match="'block_list': items must be dense item ids"):
        BlockList(items=["item7"])
    with pytest.raises(ConfigError, match=r"'business_value': value_map\['low'\] must be a number"):
        BusinessValueBoost(attribute="band", value_map={"low": "cheap"})
    with pytest.raises(ConfigError, match="'calibration': alpha must be > 0"):
        Calibration(alpha=0.0)


# ---- filters --------------------------------------------------------------------------------


def test_filters_keep_exactly_the_allowed_items() -> None:
    items = np.arange(10)
    ctx = context(history=np.array([0, 7]))
    assert np.flatnonzero(~SeenFilter().keep(items, ctx)).tolist() == [0, 7]
    assert np.flatnonzero(~AvailabilityFilter().keep(items, ctx)).tolist() == [5]
    assert np.flatnonzero(~BlockList(items=[2, 9]).keep(items, ctx)).tolist() == [2, 9]
    assert SeenFilter().keep(items, context()).all()  # empty history


def test_hard_rules_report_violations_of_a_list() -> None:
    ctx = context(history=np.array([4]))
    assert SeenFilter().violations(np.array([1, 4, -1]), ctx)
    assert not SeenFilter().violations(np.array([1, 2, -1]), ctx)
    assert AvailabilityFilter().violations(np.array([5]), ctx)
    assert CategoryCap(max_per_category=2).violations(np.array([0, 1, 2]), ctx)
    assert not CategoryCap(max_per_category=2).violations(np.array([0, 1, 3, 9]), ctx)


def test_rules_missing_their_data_are_skipped_with_a_reason() -> None:
    bare = RerankContext(n_items=10)
    assert "availability" in AvailabilityFilter().skip_reason(bare)
    assert "created_at" in FreshnessBoost().skip_reason(bare)
    assert "popularity" in PopularityBoost().skip_reason(bare)
    assert "'price'" in BusinessValueBoost(attribute="price").skip_reason(bare)
    assert "categories" in CategoryCap().skip_reason(bare)
    assert "item vectors" in MMR().skip_reason(bare)
    assert "categories" in Calibration().skip_reason(bare)
    full = context(item_vectors=np.eye(10, dtype=np.float32))
    rules = [
        AvailabilityFilter(),
        FreshnessBoost(),
        PopularityBoost(),
        CategoryCap(),
        MMR(),
        Calibration(),
    ]
    assert all(rule.skip_reason(full) is None for rule in rules)
    assert "not numeric" in BusinessValueBoost(attribute="band").skip_reason(full)
    assert "same value" in BusinessValueBoost(attribute="flat").skip_reason(full)


def test_from_catalog_treats_constant_creation_times_and_no_categories_as_missing() -> None:
    catalog = Catalog(
        ids=np.array(["a", "b", "c"]),
        text=np.array(["a", "b", "c"]),
        category=np.array([-1, -1, -1]),
        category_names=("x",),
        attributes={"price": np.array([1.0, 2.0, 3.0])},
    )
    ctx = RerankContext.from_catalog(catalog, popularity=np.array([1, 2, 3]), k=2)
    assert ctx.created_at is None and ctx.category is None and ctx.n_items == 3
    assert FreshnessBoost().skip_reason(ctx) is not None
    assert CategoryCap().skip_reason(ctx) is not None
    assert BusinessValueBoost(attribute="price").skip_reason(ctx) is None
    with pytest.raises(ConfigError, match="item_vectors must have shape"):
        RerankContext.from_catalog(catalog, item_vectors=np.ones((2, 4)))


def test_from_catalog_takes_all_true_availability_as_missing_and_keeps_real_flags() -> None:
    def catalog(available: np.ndarray | None) -> Catalog:
        return Catalog(
            ids=np.array(["a", "b", "c"]),
            text=np.array(["a", "b", "c"]),
            category=np.array([0, 1, 0]),
            category_names=("x", "y"),
            available=available,
        )

    for flags in (None, np.ones(3, dtype=bool)):  # no column, or one that excludes nothing
        ctx = RerankContext.from_catalog(catalog(flags))
        assert ctx.available is None
        assert "availability" in AvailabilityFilter().skip_reason(ctx)
    ctx = RerankContext.from_catalog(catalog(np.array([True, False, True])))
    assert AvailabilityFilter().skip_reason(ctx) is None
    assert AvailabilityFilter().keep(np.array([0, 1, 2]), ctx).tolist() == [True, False, True]


# ---- boosts ---------------------------------------------------------------------------------


def test_freshness_halves_every_half_life() -> None:
    ctx = context(now=90.0)
    values = FreshnessBoost(half_life=10.0).values(np.array([9, 8, 7, 0]), ctx)
    np.testing.assert_allclose(values, [1.0, 0.5, 0.25, 0.5**9])
    # Without a request time, the newest item in the catalog (created at 90) defines "now".
    np.testing.assert_allclose(
        FreshnessBoost(half_life=20.0).values(np.array([7]), context()), [0.5]
    )


def test_popularity_is_log_normalised_over_the_catalog() -> None:
    values = PopularityBoost().values(np.array([0, 1, 2]), context())
    np.testing.assert_allclose(values, [1.0, math.log(10) / math.log(100), 0.0])


def test_business_value_is_min_max_normalised_over_the_catalog() -> None:
    ctx = context()
    np.testing.assert_allclose(
        BusinessValueBoost(attribute="price").values(np.array([0, 9, 3]), ctx), [0, 1, 1 / 3]
    )
    inverted = BusinessValueBoost(attribute="price", invert=True).values(np.array([0, 9]), ctx)
    np.testing.assert_allclose(inverted, [1, 0])
    mapped = BusinessValueBoost(attribute="band", value_map={"low": 1, "mid": 2, "high": 3})
    # "x" is not mapped: it counts as the lowest value.
    np.testing.assert_allclose(mapped.values(np.array([0, 2, 1, 9]), ctx), [0, 0.5, 1, 0])


# ---- selection ------------------------------------------------------------------------------


def test_category_cap_holds_and_records_the_items_it_skipped() -> None:
    trace = Trace()
    ctx = context(k=4)
    items = np.array([0, 1, 2, 3, 9, 6])  # three mugs first
    _, listed = select(
        items, np.linspace(1, 0, 6), ctx, trace, caps=[CategoryCap(max_per_category=2)]
    )
    assert listed.tolist() == [0, 1, 3, 9]
    assert list(trace.removed) == [2]
    assert trace.removed[2][0] == "category_cap" and "'mug'" in trace.removed[2][1]


def test_pins_land_at_their_positions_and_count_for_the_cap() -> None:
    trace = Trace()
    ctx = context(k=4)
    items = np.array([0, 1, 3, 4, 9, 6, 7])
    pins = [Pin(item=7, position=0), Pin(item=2, position=2, always=True)]
    index, listed = select(
        items, np.linspace(1, 0, 7), ctx, trace, caps=[CategoryCap(max_per_category=1)], pins=pins
    )
    # 7 (a hat) and 2 (a mug, not a candidate) are pinned; mugs 0 and 1 would be a second mug,
    # 4 a second lamp; 9 has no category.
    assert listed.tolist() == [7, 3, 2, 9]
    assert index.tolist() == [6, 2, -1, 4]
    assert sorted(trace.removed) == [0, 1, 4]
    assert {rule for rule, _ in trace.removed.values()} == {"category_cap"}
    assert [n["action"] for n in trace.notes[7]] == ["pinned"]
    assert trace.notes[2][0]["candidate"] is False


def test_pins_yield_to_filters_and_to_missing_candidates() -> None:
    trace = Trace()
    ctx = context(k=3, history=np.array([4]))
    pins = [
        Pin(item=8, position=0),
        Pin(item=4, position=1, always=True),
        Pin(item=5, position=2, always=True),
    ]
    filters = [SeenFilter(), AvailabilityFilter()]
    _, listed = select(
        np.array([0, 1, 2]), np.array([1.0, 0.5, 0.0]), ctx, trace, pins=pins, filters=filters
    )
    assert listed.tolist() == [0, 1, 2]
    assert "not among the candidates" in trace.skipped["pin(item=8, position=0)"]
    assert "seen" in trace.skipped["pin(item=4, position=1)"]
    assert "availability" in trace.skipped["pin(item=5, position=2)"]


def test_mmr_picks_the_relevant_item_least_similar_to_the_list() -> None:
    vectors = np.zeros((10, 2), dtype=np.float32)
    vectors[[0, 1, 2]] = [1.0, 0.0]
    vectors[[3, 4]] = [0.0, 1.0]
    ctx = context(item_vectors=vectors, k=2)
    items, relevance = np.array([0, 1, 2, 3, 4]), np.array([1.0, 0.9, 0.8, 0.7, 0.6])
    trace = Trace()
    _, listed = select(items, relevance, ctx, trace, diversifier=MMR(lambda_=0.5))
    assert listed.tolist() == [0, 3]
    assert trace.notes[3][0]["rule"] == "mmr" and trace.notes[3][0]["over"] == 1
    _, plain = select(items, relevance, ctx, Trace(), diversifier=MMR(lambda_=1.0))
    assert plain.tolist() == [0, 1]


def test_calibration_follows_the_category_mix_of_the_history() -> None:
    ctx = context(history=np.array([0, 1, 3, 4]), k=2)  # half mugs, half lamps
    items, relevance = np.array([0, 1, 2, 3, 4]), np.array([1.0, 0.95, 0.9, 0.5, 0.4])
    _, listed = select(items, relevance, ctx, Trace(), diversifier=Calibration(lambda_=0.5))
    assert listed.tolist() == [0, 3]
    _, plain = select(items, relevance, ctx, Trace(), diversifier=Calibration(lambda_=0.0))
    assert plain.tolist() == [0, 1]


def test_calibration_objective_is_the_steck_kl() -> None:
    ctx = context(history=np.array([0, 3, 4, 6]), k=3)  # p = (1/4, 1/2, 1/4)
    rule = Calibration(lambda_=1.0, alpha=0.1)
    state = rule.start(np.array([1, 5, 9]), np.zeros(3), np.array([3]), ctx)  # list so far: a lamp
    p = np.array([0.25, 0.5, 0.25])

    def kl(q: np.ndarray) -> float:
        return float(np.sum(p * np.log(p / (0.9 * q + 0.1 * p))))

    expected = [
        -kl(np.array([0.5, 0.5, 0])),
        -kl(np.array([0, 1.0, 0])),
        -kl(np.array([0, 1.0, 0])),
    ]
    np.testing.assert_allclose(rule.objective(state), expected)


def test_calibration_without_a_categorised_history_is_skipped_for_the_request() -> None:
    trace = Trace()
    _, listed = select(
        np.array([0, 1]), np.array([1.0, 0.0]), context(k=2), trace, diversifier=Calibration()
    )
    assert listed.tolist() == [0, 1]
    assert "history" in trace.skipped["calibration"]


def test_every_rule_is_built_by_hydra_target_with_the_same_settings() -> None:
    from hydra.utils import instantiate

    for spec in SPECS:
        cls = RULES[spec["name"]]
        settings = {k: v for k, v in spec.items() if k != "name"}
        rule = instantiate({"_target_": f"ranking.rules.{cls.__name__}", **settings})
        assert type(rule) is cls
        assert rule.spec() == build_rule(spec).spec()
