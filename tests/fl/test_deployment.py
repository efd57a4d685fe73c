"""Deployment: a real SuperLink (TLS, SuperNode authentication) and two SuperNodes on 127.0.0.1.

The test makes credentials with ``fl/deploy/make_certs.py``, starts ``flower-superlink`` with
``--enable-supernode-auth``, registers the two SuperNodes' public keys with ``flwr supernode
register``, starts two SuperNodes (``flower-supernode``, and ``tandem-supernode``, whose ClientApp
runs resident in its own process), each with its own local dataset file
(``--node-config "data-path=..."``), submits the app with ``flwr run`` and checks the server's
``rounds.jsonl``. A SuperNode whose key was never registered is turned away. Every process the test
started (and everything they started: SuperExecs, the ServerApp, the ClientApps) is killed at the end.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from processes import (
    Cluster,
    completed_rounds,
    free_port,
    require_commands,
    wait_for_port,
    write_node_data,
)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = require_commands("flwr", "flower-superlink", "flower-supernode", "tandem-supernode")


# ---- the test --------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_superlink_with_tls_and_authenticated_supernodes_runs_a_round(tmp_path):
    certs = tmp_path / "certs"
    made = subprocess.run(
        [
            sys.executable,
            str(REPO / "fl" / "deploy" / "make_certs.py"),
            str(certs),
            "--supernodes",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    whole, node_files = write_node_data(tmp_path)
    run_dir = tmp_path / "run"
    port = free_port()

    # the CLI's (and the SuperLink's) Flower home holds the SuperLink connection
    home = tmp_path / "superlink-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "deploy"\n\n[superlink.deploy]\naddress = "127.0.0.1:{port}"\n'
        f'root-certificates = "{certs / "ca.crt"}"\n'
    )

    cluster = Cluster(tmp_path)
    try:
        superlink = cluster.start(
            "superlink",
            [
                str(BIN / "flower-superlink"),
                "--ssl-ca-certfile",
                str(certs / "ca.crt"),
                "--ssl-certfile",
                str(certs / "server.crt"),
                "--ssl-keyfile",
                str(certs / "server.key"),
                "--enable-supernode-auth",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database",
                str(tmp_path / "superlink.db"),
                "--disable-runtime-dependency-installation",
            ],
            home,
        )
        wait_for_port(port, superlink)

        for i in (1, 2):  # supernode-3 stays unregistered
            registered = cluster.cli(
                ["supernode", "register", str(certs / f"supernode-{i}.pub"), "deploy"], home
            )
            assert registered.returncode == 0 and "registered successfully" in registered.stdout, (
                registered.stdout + registered.stderr + cluster.context()
            )

        def supernode(i: int, data: Path, *extra: str) -> subprocess.Popen:
            return cluster.start(
                f"supernode-{i}",
                [
                    # supernode-2 runs tandem-supernode: its ClientApp resident in its own process
                    str(BIN / ("tandem-supernode" if i == 2 else "flower-supernode")),
                    "--superlink",
                    f"127.0.0.1:{port}",
                    "--root-certificates",
                    str(certs / "ca.crt"),
                    "--auth-supernode-private-key",
                    str(certs / f"supernode-{i}"),
                    "--port",
                    str(free_port()),
                    "--node-config",
                    f"data-path='{data}' partition-id={i - 1}",
                    *extra,
                ],
                tmp_path / f"supernode-{i}-home",
            )

        intruder = supernode(3, node_files[0], "--max-retries", "1", "--max-wait-time", "5")
        for i, data in enumerate(node_files, start=1):
            supernode(i, data)

        # an unregistered key is refused
        assert intruder.wait(timeout=60) != 0, cluster.context()
        assert "Failed to activate SuperNode" in cluster.logs["supernode-3"].read_text(), (
            cluster.context()
        )

        run_config = (
            f"data-path='{whole}' run-dir='{run_dir}' num-rounds=1 min-train-nodes=2 fraction-train=1.0 "
            "heldout-fraction=0.3 model.train.max-len=20 model.sasrec.hidden=32 model.sasrec.n-blocks=1"
        )
        submitted = cluster.cli(
            ["run", str(REPO), "deploy", "--stream", "--run-config", run_config], home, timeout=150
        )
        context = f"flwr run:\n{submitted.stdout[-4000:]}\n{submitted.stderr[-4000:]}\n{cluster.context()}"
        assert submitted.returncode == 0, context
        started = re.search(r"Successfully started run (\d+)", submitted.stdout)
        assert started, context

        listing = cluster.cli(
            ["ls", "deploy", "--run-id", started.group(1), "--format", "json"], home
        )
        first = completed_rounds(listing, run_dir, context)[1]
        assert first["aggregated"] and first["accepted"] == 2 and first["sampled"] == 2, first
        assert first["rejected"] == 0 and first["dropped"] == 0, first

        resident = cluster.logs["supernode-2"].read_text()
        assert "tandem-supernode: train task completed" in resident, cluster.context()
        nodes = cluster.cli(["supernode", "list", "deploy", "--format", "json"], home)
        assert nodes.returncode == 0, nodes.stdout + nodes.stderr
        assert len(json.loads(nodes.stdout)["nodes"]) == 2  # the intruder never became a node
    finally:
        leftovers = cluster.stop()
    assert leftovers == [], f"processes left running: {leftovers}"
