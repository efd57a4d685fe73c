"""Hybrid re-rankers: hand-checked blends, hard rules that hold, and explanations."""

from __future__ import annotations

import numpy as np
import pytest
from rerank_world import FULL_RULES, N_ITEMS, request, world

from ranking.data import Catalog
from ranking.errors import ConfigError
from ranking.hybrid import (
    Cascade,
    Constrained,
    NeuralOnly,
    RerankContext,
    RulesOnly,
    WeightedBlend,
    build_reranker,
    normalise_scores,
)
from ranking.metrics import intra_list_diversity, violation_rate
from ranking.rules import MMR, CategoryCap, PopularityBoost, SeenFilter

# ---- the baseline and the hand-checked blends -----------------------------------------------


def test_neural_only_is_the_l2_order_without_padding() -> None:
    items = np.array([7, 3, 9, -1, 4])
    scores = np.array([0.1, 2.0, 0.5, -np.inf, 1.0], dtype=np.float32)
    out = NeuralOnly()(items, scores, world().for_request(k=10))
    assert out.items.tolist() == [3, 4, 9, 7]
    np.testing.assert_allclose(out.scores, [2.0, 1.0, 0.5, 0.1])
    assert out.l1_ranks.tolist() == [1, 4, 2, 0]
    assert out.padded().tolist() == [3, 4, 9, 7] + [-1] * 6
    with pytest.raises(ConfigError, match="reranker 'neural': unknown key 'rules'"):
        build_reranker({"name": "neural", "rules": []})


def test_weighted_blend_hand_checked() -> None:
    ctx = world(popularity=np.array([0.0, 3.0, 1.0] + [0.0] * 37)).for_request(k=3)
    items = np.array([0, 1, 2])
    l2 = np.array([3.0, 1.0, 2.0], dtype=np.float32)
    pop = np.log1p([0.0, 3.0, 1.0]) / np.log1p(3.0)  # [0, 1, 0.5]
    blend = build_reranker({"name": "blend", "weights": {"l2": 1.0, "popularity": 0.5}})
    out = blend(items, l2, ctx)
    expected = np.array([1.0, 0.0, 0.5]) + 0.5 * pop  # min-max L2 + 0.5 * popularity
    assert out.items.tolist() == [0, 2, 1]
    np.testing.assert_allclose(out.scores, expected[[0, 2, 1]], rtol=1e-6)
    # With a heavier popularity weight the order flips.
    heavy = build_reranker({"name": "blend", "weights": {"l2": 1.0, "popularity": 2.0}})(
        items, l2, ctx
    )
    assert heavy.items.tolist() == [1, 2, 0]


def test_normalisers_hand_checked() -> None:
    s = np.array([3.0, 1.0, 2.0])
    np.testing.assert_allclose(normalise_scores(s, "minmax"), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(normalise_scores(s, "zscore"), (s - 2.0) / np.sqrt(2 / 3))
    np.testing.assert_allclose(normalise_scores(s, "rank"), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(normalise_scores(np.array([4.0, 4.0]), "minmax"), [1.0, 1.0])
    ctx = world(popularity=np.zeros(N_ITEMS)).for_request(k=3)
    out = WeightedBlend(weights={"l2": 2.0}, normalise="zscore")(
        np.array([0, 1, 2]), s.astype(np.float32), ctx
    )
    np.testing.assert_allclose(
        out.scores, 2.0 * (np.array([3.0, 2.0, 1.0]) - 2.0) / np.sqrt(2 / 3), rtol=1e-6
    )


def test_rules_only_ignores_l2_and_breaks_ties_by_l1_rank() -> None:
    ctx = world(popularity=np.array([1.0, 1.0, 9.0, 4.0] + [0.0] * 36)).for_request(k=4)
    items = np.array([0, 1, 2, 3])
    l2 = np.array([0.0, 5.0, 1.0, 2.0], dtype=np.float32)
    assert RulesOnly()(items, l2, ctx).items.tolist() == [0, 1, 2, 3]  # no boost: the L1 order
    out = RulesOnly(rules=[{"name": "popularity"}])(items, None, ctx)
    assert out.items.tolist() == [2, 3, 0, 1]  # 0 and 1 tie on popularity: L1 rank decides


def test_cascade_orders_only_the_l2_shortlist_by_rules() -> None:
    ctx = world(popularity=np.array([0.0, 5.0, 1.0, 50.0, 3.0] + [0.0] * 35)).for_request(k=2)
    items = np.array([0, 1, 2, 3, 4])
    l2 = np.array([5.0, 4.0, 3.0, 2.0, 1.0], dtype=np.float32)
    out = Cascade(top_n=3, rules=[PopularityBoost()])(items, l2, ctx)
    assert out.items.tolist() == [1, 2]  # 3 is the most popular but outside the L2 top 3
    assert "outside the L2 top 3" in out.explain(3)
    assert Cascade(top_n=3)(items, l2, ctx).items.tolist() == [0, 1]  # no boost: the L2 order
    with pytest.raises(ConfigError, match="reranker 'cascade': top_n 3 is below k=4"):
        Cascade(top_n=3)(items, l2, ctx.for_request(k=4))


def test_constrained_takes_only_hard_rules() -> None:
    with pytest.raises(
        ConfigError, match="reranker 'constrained': rules cannot hold boost rule 'popularity'"
    ):
        Constrained(rules=[{"name": "popularity"}])
    with pytest.raises(ConfigError, match="cannot hold diversifier rule 'mmr'"):
        build_reranker({"name": "constrained", "rules": [{"name": "mmr"}]})


# ---- hard rules hold ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rules", "blend", "cascade", "constrained"])
def test_filtered_items_never_appear_and_category_caps_hold(name: str) -> None:
    rng = np.random.default_rng(1)
    spec = {"name": name, "rules": FULL_RULES}
    if name == "cascade":
        spec["top_n"] = 10
    reranker = build_reranker(spec)
    base = world()
    cap = CategoryCap(max_per_category=2)
    for _ in range(50):
        items, scores = request(rng)
        ctx = base.for_request(history=rng.choice(N_ITEMS, 6, replace=False), k=5)
        out = reranker(items, scores, ctx)
        listed = set(out.items.tolist())
        assert not listed & set(ctx.history.tolist())
        assert not listed & {0, 1, 2, 5}
        assert base.available[out.items].all()
        assert not cap.violations(out.items, ctx)
        assert len(listed) == len(out.items) <= 5
        for item, (rule, _) in out.removed.items():
            assert item not in listed and rule in {
                "seen",
                "availability",
                "block_list",
                "category_cap",
            }


def test_violation_rate_of_neural_lists_against_a_hard_rule() -> None:
    rng = np.random.default_rng(2)
    base = world()
    seen = SeenFilter()
    neural, constrained = NeuralOnly(), Constrained(rules=[seen])
    rows, histories = {"neural": [], "constrained": []}, []
    for _ in range(30):
        items, scores = request(rng)
        histories.append(items[:2])  # the two best L1 candidates were already seen
        ctx = base.for_request(history=histories[-1], k=5)
        rows["neural"].append(neural(items, scores, ctx).padded())
        rows["constrained"].append(constrained(items, scores, ctx).padded())

    def violates(u: int, listed: np.ndarray) -> bool:
        return seen.violations(listed, base.for_request(history=histories[u]))

    assert violation_rate(np.array(rows["neural"]), violates) > 0.3
    assert violation_rate(np.array(rows["constrained"]), violates) == 0.0


# ---- selection rules inside re-rankers ------------------------------------------------------


def test_mmr_raises_intra_list_diversity() -> None:
    vectors = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (N_ITEMS, 1))
    vectors[[3, 4]] = [0.0, 1.0]  # items 0, 1, 2 point one way, 3 and 4 the other
    ctx = world(item_vectors=vectors).for_request(k=2)
    items = np.array([0, 1, 2, 3, 4])
    l2 = np.array([5.0, 4.9, 4.8, 4.0, 1.0], dtype=np.float32)
    plain = NeuralOnly()(items, l2, ctx)
    diverse = WeightedBlend(rules=[MMR(lambda_=0.5)])(items, l2, ctx)
    assert plain.items.tolist() == [0, 1]
    assert diverse.items.tolist() == [0, 3]
    assert intra_list_diversity(diverse.padded()[None], vectors) > intra_list_diversity(
        plain.padded()[None], vectors
    )
    assert "mmr: chosen over item 1" in diverse.explain(3)
    assert "pushed out by mmr" in diverse.explain(1)


def test_pins_land_at_their_positions_in_every_reranker() -> None:
    rng = np.random.default_rng(3)
    base = world()
    pins = [
        {"name": "pin", "item": 10, "position": 0, "always": True},
        {"name": "pin", "item": 11, "position": 3, "always": True},
    ]
    for name in ("rules", "blend", "constrained"):
        reranker = build_reranker(
            {"name": name, "rules": [{"name": "category_cap", "max_per_category": 3}, *pins]}
        )
        for _ in range(10):
            items, scores = request(rng)
            items[np.isin(items, [10, 11])] = -1
            out = reranker(items, scores, base.for_request(k=5))
            assert out.items[0] == 10 and out.items[3] == 11
            assert out.l1_ranks[0] == -1
            assert "pinned at position 0" in out.explain(10)


def test_pin_outside_k_raises_when_called() -> None:
    reranker = build_reranker(
        {"name": "blend", "rules": [{"name": "pin", "item": 1, "position": 5}]}
    )
    items, scores = np.array([1, 2]), np.array([1.0, 0.0], dtype=np.float32)
    reranker(items, scores, world().for_request(k=6))
    with pytest.raises(ConfigError, match="rule 'pin': position 5 is outside the top-K slots"):
        reranker(items, scores, world().for_request(k=5))
    with pytest.raises(ConfigError, match="two pins share the position 0"):
        build_reranker(
            {"name": "blend", "rules": [{"name": "pin", "item": 1}, {"name": "pin", "item": 2}]}
        )


# ---- explanations and skipped rules ---------------------------------------------------------


def test_explanations_name_every_rule_that_acted() -> None:
    ctx = world(popularity=np.arange(N_ITEMS, dtype=np.float64)).for_request(
        history=np.array([7]), k=3
    )
    items = np.array([4, 7, 8, 12, 3, 9, 6])  # 3 is unavailable, 7 seen, 4/8/12 mugs, 6 a hat
    l2 = np.array([7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0], dtype=np.float32)
    reranker = build_reranker(
        {
            "name": "blend",
            "weights": {"l2": 1.0, "popularity": 0.5},
            "rules": [
                {"name": "seen"},
                {"name": "availability"},
                {"name": "category_cap", "max_per_category": 1},
                {"name": "pin", "item": 9, "position": 0},
            ],
        }
    )
    out = reranker(items, l2, ctx)
    assert out.items.tolist() == [9, 4, 6]
    removed = {r["item"]: r["rule"] for r in out.removals}
    assert removed == {7: "seen", 3: "availability", 8: "category_cap", 12: "category_cap"}
    assert "removed by seen" in out.explain(7) and "removed by availability" in out.explain(3)
    assert "removed by category_cap" in out.explain(8) and "'mug'" in out.explain(12)
    first = out.explanations[0]
    assert [r["rule"] for r in first["rules"]] == ["popularity", "pin(item=9, position=0)"]
    boost = first["rules"][0]
    assert boost["action"] == "boost" and boost["weight"] == 0.5
    assert boost["contribution"] == pytest.approx(0.5 * np.log1p(9) / np.log1p(39), abs=1e-3)
    assert first["l1_rank"] == 5 and first["l2_score"] == 2.0
    assert first["components"]["l2"]["value"] == pytest.approx(1 / 6, abs=1e-3)
    assert "popularity" in out.explain(9) and "pinned at position 0" in out.explain(9)
    assert "not among the candidates" in out.explain(30)
    report = out.report()
    assert report["items"] == [9, 4, 6] and report["reranker"] == "blend"
    assert {r["item"] for r in report["removed"]} == {3, 7, 8, 12}


def test_a_capped_item_is_explained_by_the_cap() -> None:
    ctx = world().for_request(k=3)
    items = np.array([0, 4, 8, 1])  # three mugs first
    out = Constrained(rules=[CategoryCap(max_per_category=2)])(
        items, np.array([4, 3, 2, 1], np.float32), ctx
    )
    assert out.items.tolist() == [0, 4, 1]
    assert "removed by category_cap" in out.explain(8) and "'mug'" in out.explain(8)


def test_rules_missing_data_are_reported_as_skipped() -> None:
    bare = RerankContext(n_items=N_ITEMS, k=2)
    reranker = build_reranker(
        {
            "name": "blend",
            "weights": {"l2": 1.0, "freshness": 0.3},
            "rules": [
                {"name": "availability"},
                {"name": "business_value", "attribute": "margin"},
                {"name": "category_cap"},
                {"name": "mmr"},
            ],
        }
    )
    out = reranker(np.array([1, 2, 3]), np.array([3.0, 2.0, 1.0], np.float32), bare)
    assert out.items.tolist() == [1, 2]
    assert set(out.skipped) == {
        "availability",
        "business_value",
        "category_cap",
        "mmr",
        "freshness",
    }
    assert "'margin'" in out.skipped["business_value"] and "created_at" in out.skipped["freshness"]
    assert out.report()["skipped"] == out.skipped


def test_a_catalog_marking_every_item_available_reports_the_availability_rule_skipped() -> None:
    def catalog(available: np.ndarray) -> Catalog:
        return Catalog(
            ids=np.array([f"i{n}" for n in range(6)]),
            text=np.array([""] * 6),
            category=np.arange(6) % 2,
            category_names=("mug", "lamp"),
            available=available,
        )

    reranker = build_reranker({"name": "constrained", "rules": [{"name": "availability"}]})
    items, scores = np.arange(6), np.linspace(6.0, 1.0, 6).astype(np.float32)
    every = RerankContext.from_catalog(catalog(np.ones(6, dtype=bool)), k=4)
    out = reranker(items, scores, every)
    assert out.items.tolist() == [0, 1, 2, 3]
    assert "availability flags" in out.skipped["availability"]
    assert out.report()["skipped"] == out.skipped
    some = RerankContext.from_catalog(
        catalog(np.array([True, False, True, False, True, True])), k=4
    )
    out = reranker(items, scores, some)
    assert out.items.tolist() == [0, 2, 4, 5] and not out.skipped
    assert "removed by availability" in out.explain(1)
