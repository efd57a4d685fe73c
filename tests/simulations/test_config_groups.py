"""Every option of every config group composes (Hydra's compose API), generated options included."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from fl.strategies import STRATEGIES
from ranking.hybrid import build_reranker

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ["dataset", "split", "model", "train", "encoder", "index", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in options(g)]


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def test_every_group_has_options():
    assert all(options(g) for g in GROUPS)
    assert len(CASES) >= 25


@pytest.mark.parametrize("group, option", CASES)
def test_every_option_composes(group, option):
    cfg = composed(f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=False)
    if group in ("model", "train", "encoder", "index", "split"):
        assert cfg[group]  # the option's node is there, not empty


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_generated_strategy_option_composes(name):
    cfg = composed(f"fl/strategy={name}")
    assert cfg.fl.strategy.name == name
    assert ConfigStore.instance().load(f"fl/strategy/{name}.yaml") is not None


@pytest.mark.parametrize("option", options("reranker"))
def test_every_reranker_option_composes_and_builds(option):
    cfg = composed(f"+reranker@rerankers.extra={option}")
    reranker = build_reranker(OmegaConf.to_container(cfg.rerankers.extra, resolve=True))
    reranker.check(10)
