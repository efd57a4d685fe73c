"""Hybrid re-ranker specs: validation errors, rebuilding from a spec, and the Hydra config group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from rerank_world import FULL_RULES, N_ITEMS, request, world

from ranking.errors import ConfigError
from ranking.hybrid import RERANKERS, build_reranker
from ranking.rules import MMR

CONF = Path(__file__).resolve().parents[2] / "conf" / "reranker"


# ---- specs, validation and the config group -------------------------------------------------


def test_bad_specs_are_config_errors_naming_what_was_wrong() -> None:
    with pytest.raises(ConfigError, match="unknown reranker 'hybrid'"):
        build_reranker({"name": "hybrid"})
    with pytest.raises(ConfigError, match="reranker 'blend': unknown key 'weight'"):
        build_reranker({"name": "blend", "weight": {"l2": 1}})
    with pytest.raises(
        ConfigError,
        match=r"reranker 'blend': weights\['popularity'\] must be a finite number, got 'high'",
    ):
        build_reranker({"name": "blend", "weights": {"l2": 1, "popularity": "high"}})
    with pytest.raises(ConfigError, match=r"weights\['l2'\] must be a finite number, got True"):
        build_reranker({"name": "blend", "weights": {"l2": True}})
    with pytest.raises(ConfigError, match="reranker 'blend': weights has unknown key 'novelty'"):
        build_reranker({"name": "blend", "weights": {"l2": 1, "novelty": 0.1}})
    with pytest.raises(ConfigError, match="reranker 'blend': normalise must be one of"):
        build_reranker({"name": "blend", "normalise": "softmax"})
    with pytest.raises(ConfigError, match="unknown rule 'diversity'"):
        build_reranker({"name": "rules", "rules": [{"name": "diversity"}]})
    with pytest.raises(ConfigError, match="may hold one diversifier"):
        build_reranker({"name": "blend", "rules": [{"name": "mmr"}, {"name": "calibration"}]})
    with pytest.raises(ConfigError, match="reranker 'cascade': top_n must be an integer >= 1"):
        build_reranker({"name": "cascade", "top_n": 0})
    with pytest.raises(ConfigError, match="rules must be a list"):
        build_reranker({"name": "rules", "rules": {"name": "seen"}})


def test_specs_rebuild_the_same_reranker() -> None:
    specs = [
        {"name": "neural"},
        {"name": "rules", "rules": FULL_RULES},
        {
            "name": "blend",
            "weights": {"l2": 1.0, "popularity": 0.2},
            "normalise": "rank",
            "rules": [{"name": "mmr", "lambda_": 0.6}],
        },
        {"name": "cascade", "top_n": 7, "rules": [{"name": "freshness", "half_life": 3.0}]},
        {"name": "constrained", "rules": [{"name": "pin", "item": 4, "position": 1}]},
    ]
    assert sorted(RERANKERS) == sorted(s["name"] for s in specs)
    ctx = world().for_request(history=np.array([3]), k=5)
    items, scores = request(np.random.default_rng(4))
    for spec in specs:
        first = build_reranker(spec)
        again = build_reranker(first.spec())
        assert again.spec() == first.spec()
        assert first(items, scores, ctx).items.tolist() == again(items, scores, ctx).items.tolist()


def test_hydra_built_rule_objects_are_accepted() -> None:
    rule = MMR(lambda_=0.5)
    reranker = build_reranker({"name": "blend", "rules": [rule, {"name": "seen"}]})
    assert reranker.rules[0] is rule and reranker.diversifier is rule


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_config_in_the_reranker_group_builds_and_reranks(path: Path) -> None:
    spec = OmegaConf.load(path)
    assert "_target_" not in spec
    reranker = build_reranker(spec)
    assert reranker.name == spec.name
    assert build_reranker(reranker.spec()).spec() == reranker.spec()
    band = np.array(["budget", "standard", "premium", "luxury"])[np.arange(N_ITEMS) % 4]
    base = world(attributes={"price_band": band})
    items, scores = request(np.random.default_rng(5))
    out = reranker(items, scores, base.for_request(history=np.array([1, 2]), k=5))
    assert len(out.items) == 5 and not out.skipped


def test_the_config_group_holds_the_expected_rerankers() -> None:
    names = {p.stem for p in CONF.glob("*.yaml")}
    assert {
        "neural",
        "rules",
        "blend",
        "cascade",
        "constrained",
        "blend_mmr",
        "blend_calibrated",
    } <= names


def test_boost_labels_must_be_unique() -> None:
    two = [
        {"name": "business_value", "attribute": "price"},
        {"name": "business_value", "attribute": "x"},
    ]
    with pytest.raises(ConfigError, match="two boosts labelled 'business_value'"):
        build_reranker({"name": "rules", "rules": two})
    two[1]["label"] = "margin"
    reranker = build_reranker({"name": "blend", "weights": {"l2": 1, "margin": 0.3}, "rules": two})
    assert reranker.weights == {"business_value": 1.0, "margin": 0.3}
