"""One model spec from Hydra to Flower to checkpoint: every key carried, none dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.common.config import fuse_dicts
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fl.settings import FederatedSettings, default_run_config
from fl.task import build_task_network
from ranking.errors import ConfigError
from ranking.spec import ModelSpec
from simulations.federated import federated_settings

CONF = Path(__file__).resolve().parents[2] / "conf"
SEQUENCE_MODELS = sorted(
    p.stem for p in (CONF / "model").glob("*.yaml") if "kind:" in p.read_text()
)


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_every_sequence_model_option_is_covered():
    assert {"sasrec", "gru4rec", "lstm", "longshort"} <= set(SEQUENCE_MODELS)


@pytest.mark.parametrize("option", SEQUENCE_MODELS)
def test_central_and_federated_build_the_same_network(option, tmp_path):
    cfg = composed(f"model={option}", "model.model.hidden=24")
    central = instantiate(cfg.model, n_items=40).network
    settings = federated_settings(cfg, tmp_path / "data.npz", tmp_path / "run")
    federated = build_task_network(settings, 40)
    # through Flower's run config too (what a ClientApp in another process reads)
    through_flower = FederatedSettings.from_run_config(
        fuse_dicts(default_run_config(), settings.to_run_config())
    )
    assert through_flower.replace(model=settings.model) == settings
    assert through_flower.model.train == settings.model.train
    carried = through_flower.model.network_settings()
    assert all(carried[k] == v for k, v in settings.model.network_settings().items())
    deployed = build_task_network(through_flower, 40)
    want = {k: tuple(v.shape) for k, v in central.state_dict().items()}
    for net in (federated, deployed):
        assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == want
        assert type(net) is type(central)
        for key, value in central.state_dict().items():  # same seed, same initial weights
            assert net.state_dict()[key].equal(value), key
    if option == "lstm":
        assert federated.cell == "lstm"
    if option == "longshort":
        assert settings.model.model["session_encoder"] == OmegaConf.select(
            cfg, "model.model.session_encoder"
        )


@pytest.mark.parametrize(
    "spec, where",
    [
        ({"kind": "sasrec", "model": {"hidden": 8, "n_layer": 2}}, "model.model.n_layer"),
        ({"kind": "gru4rec", "model": {"n_blocks": 2}}, "model.model.n_blocks"),
        ({"kind": "sasrec", "train": {"epoch": 3}}, "model.train.epoch"),
        ({"kind": "sasrec", "optimizer": "adam"}, "model.optimizer"),
    ],
)
def test_unknown_model_spec_keys_are_named(spec, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        ModelSpec.from_mapping(spec)


@pytest.mark.parametrize(
    "strategy, where",
    [
        ({"name": "fedadam", "lr": 0.1}, r"fl\.strategy\.lr"),
        ({"name": "krum", "num_nodes_to_select": 2}, "num_nodes_to_select"),
        ({"name": "fedsgd"}, "fedsgd"),
    ],
)
def test_unknown_strategy_spec_keys_are_named(strategy, where):
    with pytest.raises(ConfigError, match=where):
        FederatedSettings.create(strategy=strategy)


def test_an_unknown_model_override_fails_when_the_run_is_built(tmp_path):
    cfg = composed("model=sasrec", "+model.model.n_layers=2")
    with pytest.raises(ConfigError, match=r"model\.model\.n_layers"):
        federated_settings(cfg, tmp_path / "d.npz", tmp_path / "run")
