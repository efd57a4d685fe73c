"""The simulation's backend comes from config: two rounds on an existing Ray cluster (a real
``ray start --head`` on 127.0.0.1), with no code change."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from processes import TAG, free_port, require_commands, stop_tagged

from fl.server_app import read_rounds
from fl.settings import FederatedSettings
from fl.task import task_data
from ranking.errors import ConfigError
from ranking.storage import save_dataset
from simulations.datasets.synthetic import generate_world
from simulations.flower_sim import SimulationBackend, simulate

BIN = Path(sys.executable).parent


def test_backend_settings_are_checked_and_turned_into_flowers_backend_config():
    local = SimulationBackend(num_cpus_per_client=0.5, num_actors=3).backend_config()
    assert local["client_resources"] == {"num_cpus": 0.5, "num_gpus": 0.0}
    assert local["init_args"]["num_cpus"] == 2  # 3 actors x 0.5 CPU, rounded
    remote = SimulationBackend(ray_address="10.0.0.5:6379").backend_config()
    assert (
        remote["init_args"]["address"] == "10.0.0.5:6379" and "num_cpus" not in remote["init_args"]
    )
    with pytest.raises(ConfigError, match="num_actors applies to a local Ray only"):
        SimulationBackend(num_actors=2, ray_address="auto")
    with pytest.raises(ConfigError, match="simulation.colour"):
        SimulationBackend.from_mapping({"colour": "red"})


@require_commands("ray")
@pytest.mark.timeout(300)
def test_two_rounds_run_on_an_existing_ray_cluster(tmp_path):
    port = free_port()
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must be short
    tag = f"ray-cluster-{port}"
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            f"--temp-dir={ray_tmp}",
            "--block",
        ],
        env={**os.environ, TAG: tag, "RAY_USAGE_STATS_ENABLED": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(ray_tmp.glob("session_*/logs/gcs_server.out")):
            assert head.poll() is None and time.monotonic() < deadline, "ray head did not start"
            time.sleep(0.5)
        save_dataset(generate_world(n_items=100, n_users=60, seed=2).dataset, tmp_path / "d.npz")
        settings = FederatedSettings.create(
            data_path=str(tmp_path / "d.npz"),
            run_dir=str(tmp_path / "run"),
            num_rounds=2,
            fraction_train=1.0,
            partition="users_per_client",
            users_per_client=20,
            strategy={"name": "fedavg"},
            model={
                "kind": "sasrec",
                "model": {"hidden": 16, "n_blocks": 1},
                "train": {"max_len": 10},
            },
        )
        n_clients = task_data(settings).partition.n_clients
        before = set(ray_tmp.glob("session_*/logs/worker-*"))
        simulate(settings, n_clients, SimulationBackend(ray_address=f"127.0.0.1:{port}"))
        rows = read_rounds(tmp_path / "run")
        assert [r["round"] for r in rows] == [0, 1, 2]
        assert all(r["aggregated"] for r in rows[1:])
        # the clients ran as workers of that cluster (its logs), not of a Ray started here
        assert set(ray_tmp.glob("session_*/logs/worker-*")) - before
    finally:
        leftovers = stop_tagged(tag, [head], grace=20)
    assert leftovers == [], f"ray processes left running: {leftovers}"
