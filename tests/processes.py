"""Processes started by the Flower tests: free ports, tagging, guaranteed cleanup, a cluster of
real Flower processes and the per-node data files they train on."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

TAG = "TANDEM_FLWR_TEST"
"""Environment variable that marks every process a test starts (value: a per-test id)."""


BIN = Path(sys.executable).parent


def require_commands(*names: str) -> pytest.MarkDecorator:
    """Skip when a command is not installed next to this Python; under ``CI=true`` a missing
    command is a failure (the suite must exercise real Flower processes there)."""
    missing = [name for name in names if shutil.which(name, path=str(BIN)) is None]
    reason = f"commands not installed next to this Python: {missing}"
    if missing and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return pytest.mark.usefixtures("fail_missing_commands")  # the fixture lives in conftest.py
    return pytest.mark.skipif(bool(missing), reason=reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tagged(value: str) -> list[int]:
    """Ids of the live processes whose environment holds ``TAG=value``."""
    marker = f"{TAG}={value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:  # gone, a zombie, or not ours
            continue
    return pids


def stop_tagged(value: str, popens: list[subprocess.Popen], grace: float = 10.0) -> list[int]:
    """SIGTERM our process groups and every tagged process, SIGKILL what is left; returns leftovers."""
    for proc in popens:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for pid in tagged(value):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while tagged(value) and time.monotonic() < deadline:
        for proc in popens:
            proc.poll()  # reap
        time.sleep(0.2)
    for pid in tagged(value):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for proc in popens:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    time.sleep(0.5)
    return tagged(value)


def completed_rounds(
    listing: subprocess.CompletedProcess, run_dir: Path, context: str
) -> list[dict]:
    """Assert that ``flwr ls --format json`` reports the run finished and completed, and that the
    ServerApp wrote rounds 0 and 1 into ``run_dir``; returns those rows."""
    import json

    from fl.server_app import read_rounds

    assert listing.returncode == 0, listing.stdout + listing.stderr
    run = json.loads(listing.stdout)["runs"][0]
    assert run["status"] == "finished:completed", (
        f"{run['status']}: {run['status-details']}\n{context}"
    )
    rows = read_rounds(run_dir)
    assert [r["round"] for r in rows] == [0, 1], context
    return rows


def _tail(path: Path, n: int = 40) -> str:
    if not path.exists():
        return f"({path} missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


class Cluster:
    """Processes started in their own sessions, with a shared marker in their environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tag = uuid.uuid4().hex
        self.popens: list[subprocess.Popen] = []
        self.logs: dict[str, Path] = {}

    def env(self, home: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # SuperExecs are started by name
            FLWR_HOME=str(home),
            FLWR_DISABLE_UPDATE_CHECK="1",
            FLWR_TELEMETRY_ENABLED="0",
            **{TAG: self.tag},
        )
        return env

    def start(self, name: str, command: list[str], home: Path) -> subprocess.Popen:
        log = self.root / f"{name}.log"
        self.logs[name] = log
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command,
                cwd=self.root,
                env=self.env(home),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.popens.append(proc)
        return proc

    def cli(self, args: list[str], home: Path, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "flwr"), *args],
            cwd=self.root,
            env=self.env(home),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def context(self) -> str:
        return "\n\n".join(f"--- {name}:\n{_tail(log)}" for name, log in self.logs.items())

    def stop(self) -> list[int]:
        return stop_tagged(self.tag, self.popens)


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"process exited with {proc.returncode} before listening on {port}"
            )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


def write_node_data(root: Path) -> tuple[Path, list[Path]]:
    """The whole dataset (the server's) and the training users split in two (one file per node)."""
    from fl.settings import FederatedSettings
    from fl.task import task_data
    from ranking.data.dataset import Dataset
    from ranking.storage import save_dataset
    from simulations.datasets.synthetic import generate_world

    dataset = generate_world(n_items=150, n_users=90, seed=0).dataset
    whole = root / "data.npz"
    save_dataset(dataset, whole)
    train = task_data(FederatedSettings(data_path=str(whole), heldout_fraction=0.3)).train
    nodes = []
    for i, users in enumerate(np.array_split(np.unique(train.user), 2)):
        local = Dataset(
            name=f"node{i}",
            catalog=dataset.catalog,
            interactions=train.take(np.isin(train.user, users)),
        )
        path = root / f"node{i}.npz"
        save_dataset(local, path)
        nodes.append(path)
    return whole, nodes
