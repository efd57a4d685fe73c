"""Edge devices on real Flower processes: a device that declines, a SuperLink that is killed and
restarted mid-run (``--database`` keeps the run), and device state kept on disk.

A SuperLink (insecure, 127.0.0.1) and three SuperNodes run the app. Two devices train and keep
their counters in a ``state-dir``; the third one's status file says it is busy, so it declines
every round. After the first round the SuperLink is SIGKILLed and started again on the same
database and port. The SuperNodes reconnect by themselves. In Flower 1.42 the run's ServerApp dies
with the SuperLink (the run ends ``finished:failed``); tandem's ServerApp resumes from its run
directory, so the same ``flwr run`` submitted again finishes the remaining rounds, each round once.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from processes import (
    Cluster,
    free_port,
    require_commands,
    wait_for_port,
    write_node_data,
)

from fl.server_app import read_rounds

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROUNDS = 2

pytestmark = require_commands("flwr", "flower-superlink", "flower-supernode")


def _wait_for(predicate, timeout: float, what: str, context) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached after {timeout}s\n{context()}")


@pytest.mark.timeout(420)
def test_a_run_survives_a_superlink_restart_and_a_declining_device(tmp_path):
    whole, node_files = write_node_data(tmp_path)
    run_dir = tmp_path / "run"
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "edge"\n\n[superlink.edge]\naddress = "127.0.0.1:{port}"\n'
        "insecure = true\n"
    )
    busy = tmp_path / "busy.json"
    busy.write_text(json.dumps({"idle": False, "charging": True}))
    superlink_cmd = [
        str(BIN / "flower-superlink"),
        "--insecure",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--database",
        str(tmp_path / "superlink.db"),
        "--disable-runtime-dependency-installation",
    ]
    cluster = Cluster(tmp_path)
    try:
        superlink = cluster.start("superlink", superlink_cmd, home)
        wait_for_port(port, superlink)
        nodes = {
            1: f"data-path='{node_files[0]}' partition-id=0 state-dir='{tmp_path / 'state-1'}'",
            2: f"data-path='{node_files[1]}' partition-id=1 state-dir='{tmp_path / 'state-2'}'",
            3: f"data-path='{node_files[0]}' partition-id=2 participation-file='{busy}'",
        }
        supernodes = {}
        for i, node_config in nodes.items():
            supernodes[i] = cluster.start(
                f"supernode-{i}",
                [
                    str(BIN / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{port}",
                    "--port",
                    str(free_port()),
                    "--max-wait-time",
                    "300",
                    "--node-config",
                    node_config,
                ],
                tmp_path / f"supernode-{i}-home",
            )
        run_config = (
            f"data-path='{whole}' run-dir='{run_dir}' num-rounds={ROUNDS} min-train-nodes=2 "
            "fraction-train=1.0 heldout-fraction=0.3 model.train.max-len=20 "
            "model.sasrec.hidden=16 model.sasrec.n-blocks=1"
        )
        submitted = cluster.cli(["run", str(REPO), "edge", "--run-config", run_config], home)
        started = re.search(r"Successfully started run (\d+)", submitted.stdout)
        assert started, submitted.stdout + submitted.stderr + cluster.context()
        run_id = started.group(1)

        def rounds_done() -> int:
            return max((r["round"] for r in read_rounds(run_dir)), default=-1)

        _wait_for(lambda: rounds_done() >= 1, 200, "round 1", cluster.context)
        superlink.send_signal(signal.SIGKILL)  # the coordinator goes away mid-run
        superlink.wait(timeout=30)
        time.sleep(2)
        superlink = cluster.start("superlink-restarted", superlink_cmd, home)
        wait_for_port(port, superlink)

        def status(run: str) -> str:
            listing = cluster.cli(["ls", "edge", "--run-id", run, "--format", "json"], home)
            ok = listing.returncode == 0
            runs = json.loads(listing.stdout or "{}").get("runs", []) if ok else []
            return runs[0]["status"] if runs else "unknown"

        def ended(run: str):
            return lambda: status(run).startswith("finished")

        _wait_for(ended(run_id), 300, "the run's end", cluster.context)
        if status(run_id) != "finished:completed":  # the ServerApp died with the SuperLink: resume
            again = cluster.cli(["run", str(REPO), "edge", "--run-config", run_config], home)
            resumed = re.search(r"Successfully started run (\d+)", again.stdout)
            assert resumed, again.stdout + again.stderr + cluster.context()
            run_id = resumed.group(1)
            _wait_for(ended(run_id), 300, "the resumed run", cluster.context)
        context = cluster.context()
        assert status(run_id) == "finished:completed", context
        assert all(proc.poll() is None for proc in supernodes.values()), context  # rode it out
        rows = [r for r in read_rounds(run_dir) if r["round"] > 0]
        assert [r["round"] for r in rows] == list(range(1, ROUNDS + 1)), context
        assert all(r["aggregated"] and r["declined"] == 1 for r in rows), rows
        trained = {
            i: json.loads((tmp_path / f"state-{i}" / "client_state.json").read_text())
            for i in (1, 2)
        }
        for state in trained.values():  # the devices' own counters, on their disks
            # a round cut short by the restart is trained again after it: at least one per round
            assert state["rounds_trained"] >= ROUNDS and state["last_round"] == ROUNDS
            assert state["steps"] > 0 and state["rounds_declined"] == 0
    finally:
        leftovers = cluster.stop()
    assert leftovers == [], f"processes left running: {leftovers}"
