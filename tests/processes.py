"""Processes started by the Flower tests: free ports, tagging and guaranteed cleanup."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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
