"""Device rules: resource caps, participation (declines are normal outcomes), state across restarts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import log_from_sequences, rule_log

from fl.device_rules import DeviceRules, LocalState, recent_history
from fl.server_app import read_rounds
from fl.settings import FederatedSettings
from fl.task import task_data
from ranking.errors import ConfigError
from ranking.models import build_model
from ranking.storage import save_dataset
from ranking.train_config import TrainConfig
from ranking.trainer import train_epochs
from simulations.datasets.synthetic import generate_world
from simulations.flower_sim import simulate


@pytest.mark.parametrize(
    ("node", "says"),
    [
        ({"max-threads": 0}, "max-threads=0"),
        ({"max-local-steps": 2.5}, "max-local-steps=2.5"),
        ({"max-rounds-per-day": "many"}, "max-rounds-per-day='many'"),
    ],
)
def test_bad_node_config_names_the_key(node, says):
    with pytest.raises(ConfigError, match=says):
        DeviceRules.from_node_config(node)


def test_the_device_trains_only_when_idle_and_charging(tmp_path):
    status = tmp_path / "status.json"
    rules = DeviceRules.from_node_config({"participation-file": str(status), "data-path": "x"})
    state = LocalState()
    assert "unreadable" in rules.decline_reason(state, "2026-12-05")
    status.write_text(json.dumps({"idle": True, "charging": False}))
    assert "not idle and charging" in rules.decline_reason(state, "2026-12-05")
    status.write_text(json.dumps({"idle": True, "charging": True}))
    assert rules.decline_reason(state, "2026-12-05") is None


def test_rounds_per_day_are_counted_in_state_that_survives_a_restart(tmp_path):
    rules = DeviceRules.from_node_config({"max-rounds-per-day": 2, "state-dir": str(tmp_path)})
    state = LocalState.load(rules.state_dir)
    for round_ in (1, 2):
        assert rules.decline_reason(state, "2026-12-05") is None
        state.record(round_, "2026-12-05", steps=5)
    restarted = LocalState.load(rules.state_dir)  # a new process reads the same store
    assert (restarted.rounds_trained, restarted.steps, restarted.last_round) == (2, 10, 2)
    assert "2 rounds today already" in rules.decline_reason(restarted, "2026-12-05")
    assert rules.decline_reason(restarted, "2026-12-06") is None
    restarted.record(3, "2026-12-05", declined=True)
    assert LocalState.load(rules.state_dir).rounds_declined == 1


def test_a_corrupt_store_is_set_aside_and_a_fresh_one_started(tmp_path):
    (tmp_path / "client_state.json").write_text("{half")
    state = LocalState.load(str(tmp_path))
    assert state.rounds_trained == 0 and (tmp_path / "client_state.corrupt").exists()
    state.record(1, "2026-12-05", steps=3)
    assert LocalState.load(str(tmp_path)).steps == 3


def test_history_and_local_steps_are_capped():
    log = log_from_sequences([[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11, 12]], n_items=20)
    kept = recent_history(log, 3)
    assert kept.sequences()[0].tolist() == [4, 5, 6] and kept.sequences()[1].tolist() == [7, 8]
    model = build_model("sasrec", 50, hidden=8, n_blocks=1, max_len=8)
    cfg = TrainConfig.from_mapping({"batch_size": 4, "max_len": 8, "loss": "ce"})
    sequences = rule_log(50, n_users=40).sequences()
    assert train_epochs(model, sequences, cfg, 2)["steps"] > 5
    assert train_epochs(model, sequences, cfg, 2, max_steps=5)["steps"] == 5


def test_declining_devices_are_counted_apart_and_the_run_goes_on(tmp_path):
    save_dataset(generate_world(n_items=120, n_users=80, seed=1).dataset, tmp_path / "data.npz")
    settings = FederatedSettings.create(
        data_path=str(tmp_path / "data.npz"),
        run_dir=str(tmp_path / "run"),
        num_rounds=2,
        fraction_train=1.0,
        min_train_nodes=1,
        partition="users_per_client",
        users_per_client=8,
        availability=0.5,
        strategy={"name": "fedavg"},
        model={"kind": "sasrec", "model": {"hidden": 16, "n_blocks": 1}, "train": {"max_len": 10}},
    )
    n_clients = task_data(settings).partition.n_clients
    simulate(settings, num_supernodes=n_clients)
    rows = [r for r in read_rounds(tmp_path / "run") if r["round"] > 0]
    assert [r["round"] for r in rows] == [1, 2]
    assert all(r["sampled"] == n_clients for r in rows)  # round 1 waited for every node
    declined = np.array([r["declined"] for r in rows])
    assert declined.sum() > 0 and all(r["dropped"] == 0 for r in rows)
    assert all(r["accepted"] + r["declined"] == r["sampled"] for r in rows)
    assert all(r["aggregated"] for r in rows)
