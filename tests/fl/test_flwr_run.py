"""``flwr run .``: the app bundle, its run config and the README's ``flwr run .`` block, run as
written (tiny values substituted) through a local SuperLink.

``flwr run . local`` starts a detached local SuperLink (its own session) that outlives the command,
plus a SuperExec and the simulation processes. The test gives all of them a private ``FLWR_HOME``,
private ports and a marker in their environment, and kills every process carrying the marker.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
import tomllib
import uuid
import zipfile
from pathlib import Path

import pytest
from documented_examples import fenced_block, substituted
from processes import TAG, completed_rounds, free_port, require_commands, stop_tagged

from fl.settings import FederatedSettings, default_run_config

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

needs_flower_cli = require_commands("flwr", "flower-superlink")


# ---- processes -------------------------------------------------------------------------------


def _env_without_the_venv(home: Path, tag: str, **extra: str) -> dict[str, str]:
    """This environment with a private ``FLWR_HOME`` and the test's marker, but without what the
    README's block sets itself (the venv on ``PATH``, no runtime dependency installation), so
    that the block is run as a user would run it."""
    env = dict(os.environ)
    env.pop("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", None)
    env["PATH"] = os.pathsep.join(
        entry
        for entry in env.get("PATH", "").split(os.pathsep)
        if entry and Path(entry).resolve() != BIN.resolve()
    )
    env.update(
        FLWR_HOME=str(home),
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_TELEMETRY_ENABLED="0",
        RAY_ADDRESS="local",  # a private Ray instance, never one another process started
        **{TAG: tag},
        **extra,
    )
    return env


def _tail(path: Path, n: int = 60) -> str:
    if not path.exists():
        return f"({path} missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


# ---- the app bundle and its config -----------------------------------------------------------


def _app_table() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]


def test_pyproject_run_config_equals_the_settings_defaults():
    from flwr.common.config import flatten_dict

    config = flatten_dict(_app_table()["config"])
    assert config == default_run_config(), (
        "pyproject.toml [tool.flwr.app.config] != default_run_config()"
    )
    settings = FederatedSettings.from_run_config(config)
    default = FederatedSettings()
    assert (
        settings.replace(model=default.model) == default
        and settings.model.train == default.model.train
    )
    assert settings.model.network_settings() == {
        "hidden": 64,
        "n_blocks": 2,
        "n_heads": 1,
        "dropout": 0.1,
        "max_len": 50,
        "item_residual_rank": 0,
    }


def test_a_one_key_override_switches_model_kind_and_strategy_with_their_settings():
    from flwr.common.config import fuse_dicts, parse_config_args

    overrides = parse_config_args(
        [
            "model.kind='longshort' model.longshort.session-encoder='attention' strategy.name='fedprox' "
            "strategy.fedprox.proximal-mu=0.5 model.train.batch-size=32"
        ]
    )
    settings = FederatedSettings.from_run_config(fuse_dicts(default_run_config(), overrides))
    assert (
        settings.model.kind == "longshort"
        and settings.model.model["session_encoder"] == "attention"
    )
    assert settings.model.train.batch_size == 32
    assert settings.strategy.name == "fedprox" and settings.strategy.settings.proximal_mu == 0.5


def test_app_components_point_at_the_apps():
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    import fl.client_app
    import fl.server_app

    components = _app_table()["components"]
    assert components == {"serverapp": "fl.server_app:app", "clientapp": "fl.client_app:app"}
    assert isinstance(fl.server_app.app, ServerApp) and isinstance(fl.client_app.app, ClientApp)


def test_fab_holds_the_app_packages_and_nothing_large():
    from flwr.cli.build import build_fab_from_disk

    fab = build_fab_from_disk(REPO)
    names = zipfile.ZipFile(io.BytesIO(fab)).namelist()
    for needed in (
        "pyproject.toml",
        "fl/server_app.py",
        "fl/client_app.py",
        "ranking/storage.py",
        "encoders/errors.py",
    ):
        assert needed in names
    top = {name.split("/")[0] for name in names}
    assert top <= {"pyproject.toml", "README.md", ".info", "fl", "ranking", "encoders"}, top
    assert not any(name.startswith("fl/deploy/") for name in names)
    assert len(fab) < 1_000_000


# ---- flwr run . (the README's block) ---------------------------------------------------------

FLWR_RUN_MARKER = "flwr run . local"
"""The README's ``flwr run .`` example is the one bash block holding this."""

TINY_FLWR_RUN = {
    # the block runs in a temporary directory (its `runs/` is not the repository's); `.` is the app
    FLWR_RUN_MARKER: f"flwr run {shlex.quote(str(REPO))} local",
    "generate_world()": "generate_world(n_items=150, n_users=90, seed=0)",
    '"num-supernodes=10"': '"num-supernodes=3 client-resources-num-cpus=2 init-args-num-cpus=2"',
    "n-clients=10": "n-clients=3",
    "num-rounds=3": (
        "num-rounds=1 fraction-train=1.0 min-train-nodes=3 heldout-fraction=0.3 "
        "model.train.max-len=20 model.sasrec.hidden=32 model.sasrec.n-blocks=1"
    ),
}


def test_the_readme_flwr_run_block_is_found_and_takes_the_tiny_values():
    block = substituted(fenced_block("bash", FLWR_RUN_MARKER), TINY_FLWR_RUN)
    assert "num-supernodes=3 " in block and "n-clients=3 " in block and "num-rounds=1 " in block


@needs_flower_cli
@pytest.mark.timeout(240)
def test_flwr_run_local_simulation_with_three_supernodes(tmp_path):
    """The README's block, run by bash in a directory that has the venv as ``.venv``, with three
    SuperNodes, one round and a small model; a private ``FLWR_HOME`` and private ports."""
    script = substituted(fenced_block("bash", FLWR_RUN_MARKER), TINY_FLWR_RUN)
    (tmp_path / ".venv").symlink_to(BIN.parent, target_is_directory=True)
    run_dir = tmp_path / "runs" / "flwr-sim"  # the README's `$PWD/runs/flwr-sim`
    home = tmp_path / "flwr-home"
    tag = uuid.uuid4().hex
    env = _env_without_the_venv(
        home,
        tag,
        FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(free_port()),
        FLWR_LOCAL_CONTROL_API_PORT=str(free_port()),
    )
    log = tmp_path / "flwr-run.log"
    popens: list[subprocess.Popen] = []
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["bash", "-e", "-u", "-c", script],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            popens.append(proc)
            try:
                rc = proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                rc = None
        superlink_log = home / "local-superlink" / "superlink.log"
        context = f"script:\n{script}\nflwr run:\n{_tail(log)}\n\nlocal SuperLink:\n{_tail(superlink_log)}"
        assert rc == 0, context
        started = re.search(r"Successfully started run (\d+)", log.read_text())
        assert started, context

        # the SuperLink reports the run as finished and completed
        listing = subprocess.run(
            [str(BIN / "flwr"), "ls", "local", "--run-id", started.group(1), "--format", "json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        rows = completed_rounds(listing, run_dir, context)
        assert rows[1]["aggregated"] and rows[1]["accepted"] == 3 and rows[1]["sampled"] == 3
        assert "ndcg@10" in rows[1]
        assert (run_dir / "checkpoint.npz").exists()
    finally:
        leftovers = stop_tagged(tag, popens)
    assert leftovers == [], f"processes left running: {leftovers}"
