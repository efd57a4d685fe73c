"""SecAgg+ (legacy workflow API): the session model trains while the server sees only masked sums."""

import json
import re
from pathlib import Path

import pytest

from fl.secagg_app import make_secagg_apps
from fl.settings import FederatedSettings
from ranking.errors import ConfigError
from ranking.storage import save_dataset
from simulations.datasets.synthetic import generate_world
from simulations.flower_sim import simulate_apps


def test_secagg_plus_rounds_train_the_model(tmp_path):
    save_dataset(generate_world(n_items=150, n_users=90, seed=0).dataset, tmp_path / "data.npz")
    settings = FederatedSettings.create(
        data_path=str(tmp_path / "data.npz"),
        run_dir=str(tmp_path / "run"),
        num_rounds=2,
        fraction_train=1.0,
        min_train_nodes=4,
        partition="users_per_client",
        users_per_client=20,
        local_epochs=3,
        lr=0.5,
        heldout_fraction=0.3,
        model={"kind": "sasrec", "model": {"hidden": 32, "n_blocks": 1}, "train": {"max_len": 20}},
    )
    server_app, client_app = make_secagg_apps(settings)
    simulate_apps(server_app, client_app, num_supernodes=4)
    summary = json.loads((Path(settings.run_dir) / "secagg_summary.json").read_text())
    assert summary["changed"] and summary["rounds"] == 2
    assert summary["ndcg@10"] > summary["ndcg@10_initial"]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"dp_noise_multiplier": 0.5}, "fl.dp-noise-multiplier=0.5"),
        ({"robust_aggregator": "krum"}, "fl.robust-aggregator='krum'"),
        ({"update_encoding": "row-sparse"}, "fl.update-encoding='row-sparse'"),
        ({"quantize": "int8"}, "fl.quantize='int8'"),
        ({"model_average_decay": 0.9}, "fl.model-average-decay=0.9"),
    ],
)
def test_settings_that_secagg_cannot_honour_are_refused_by_name(setting, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        make_secagg_apps(FederatedSettings.create(**setting))
