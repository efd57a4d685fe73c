"""Real processes for the service tests: ``tandem-serve`` (uvicorn) and ``redis-server``, each on a
free port of 127.0.0.1, stopped by the test that started them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import free_port

TOKEN = "test-admin-token"


class Server:
    def __init__(self, bundle: Path, state: Path, *overrides: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = state / f"server-{self.port}.log"
        state.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "serving.cli",
            "--bundle",
            str(bundle),
            f"port={self.port}",
            f"event_log={state / 'events.log'}",
            f"admin_token={TOKEN}",
            *overrides,
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tandem-serve exited {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"tandem-serve not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        self.kill(signal.SIGKILL)


@contextlib.contextmanager
def running(bundle: Path, state: Path, *overrides: str) -> Iterator[Server]:
    server = Server(bundle, state, *overrides)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_server(directory: Path, *, durable: bool = False) -> Iterator[str]:
    """A private ``redis-server``; ``durable``: ``appendonly yes`` with ``appendfsync always``."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true but redis-server is not installed (make setup installs it)")
        pytest.skip("redis-server is not installed (make setup installs it)")
    import redis

    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    args += ["--save", "", "--appendonly", "yes" if durable else "no"]
    if durable:
        args += ["--appendfsync", "always"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
