"""tandem-supernode's parts that need no SuperLink: its command line, the module isolation of app
bundles and the task heartbeat. A real run with it is in tests/fl/test_deployment.py."""

from __future__ import annotations

import sys
import types

import pytest

from fl.resident_supernode import (
    ResidentSupernodeError,
    forget_modules_of,
    runtime_api,
    supernode_argv,
    task_heartbeat,
)


def test_the_command_line_gets_process_isolation_and_refuses_subprocess():
    assert supernode_argv(["--insecure"]) == ["--insecure", "--isolation", "process"]
    assert supernode_argv(["--isolation", "process"]) == ["--isolation", "process"]
    assert supernode_argv(["--isolation=process"]) == ["--isolation=process"]
    for refused in (["--isolation", "subprocess"], ["--isolation=subprocess"]):
        with pytest.raises(ResidentSupernodeError, match="--isolation subprocess"):
            supernode_argv(refused)


def test_the_executor_reaches_the_runtime_api_where_the_supernode_serves_it():
    address, insecure, certificates = runtime_api(["--insecure", "--port", "9555"])
    assert (address, insecure, certificates) == ("127.0.0.1:9555", True, None)
    address, _, _ = runtime_api(["--host", "0.0.0.0", "--port", "9556"])
    assert address == "127.0.0.1:9556"  # a wildcard bind is reached on loopback


def _package(root, name: str, value: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(f"VALUE = {value!r}\n")


def test_a_bundle_is_imported_from_its_own_directory_not_an_earlier_copy(tmp_path, monkeypatch):
    name = "tandem_probe_pkg"
    installed, bundle_a, bundle_b = tmp_path / "site", tmp_path / "a", tmp_path / "b"
    _package(installed, name, "installed")
    _package(bundle_a, name, "a")
    _package(bundle_b, name, "b")
    (bundle_a / "pyproject.toml").write_text("")  # not a package: left alone
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.delitem(sys.modules, name, raising=False)
    unrelated = types.ModuleType("tandem_probe_other")
    monkeypatch.setitem(sys.modules, "tandem_probe_other", unrelated)
    try:
        assert __import__(name).VALUE == "installed"
        forget_modules_of(bundle_a, None)
        assert name not in sys.modules and sys.modules["tandem_probe_other"] is unrelated
        sys.path.insert(0, str(bundle_a))  # what Flower's load_app does
        assert __import__(name).VALUE == "a"
        forget_modules_of(bundle_a, None)  # the same bundle again: its module stays
        assert sys.modules[name].VALUE == "a"
        forget_modules_of(bundle_b, bundle_a)  # another bundle: a's modules and path go
        assert name not in sys.modules and str(bundle_a) not in sys.path
        sys.path.insert(0, str(bundle_b))
        assert __import__(name).VALUE == "b"
    finally:
        sys.modules.pop(name, None)
        for path in (str(bundle_a), str(bundle_b)):
            while path in sys.path:
                sys.path.remove(path)


class _HeartbeatClient:
    def __init__(self, answers: list[bool]) -> None:
        self.answers, self.calls = answers, 0

    def SendTaskHeartbeat(self, request):  # noqa: N802 (Flower's RPC name)
        self.calls += 1
        return types.SimpleNamespace(success=self.answers.pop(0))


def test_a_task_the_supernode_forgot_stops_its_heartbeat_without_stopping_the_process():
    client = _HeartbeatClient([True, False, True])
    beat = task_heartbeat(client)  # type: ignore[arg-type]
    assert beat() and client.calls == 1
    assert beat() and client.calls == 2  # not known any more: no SIGINT, no failure to retry
    assert beat() and client.calls == 2  # and no more heartbeats for this task


def test_a_task_that_fails_outside_the_app_does_not_stop_the_executor(monkeypatch):
    import threading

    from fl.resident_supernode import ResidentClientApps

    executor = ResidentClientApps("127.0.0.1:1", True, None)
    stop, acquired = threading.Event(), []

    class _Runtime:
        def AcquireTask(self, request):  # noqa: N802 (Flower's RPC name)
            acquired.append(request)
            if len(acquired) == 3:
                stop.set()
            return types.SimpleNamespace(HasField=lambda name: True, token="token")

    def fails(token: str) -> None:
        raise RuntimeError("the reply could not be pushed")

    monkeypatch.setattr(executor, "_client", lambda *interceptors: _Runtime())
    monkeypatch.setattr(executor, "run_task", fails)
    executor.serve(stop)
    assert len(acquired) == 3  # it went on asking for tasks after each failure


def test_flags_that_need_a_separate_executor_are_refused():
    for flag in ("--superexec-auth-secret-file=secret", "--allow-runtime-dependency-installation"):
        with pytest.raises(ResidentSupernodeError, match=flag.split("=")[0]):
            supernode_argv(["--insecure", flag])


def _status_error(code: int):
    import httpx

    request = httpx.Request("POST", "http://127.0.0.1:1/x")
    return httpx.HTTPStatusError("status", request=request, response=httpx.Response(code))


def test_a_revoked_task_token_fails_the_call_instead_of_signalling_the_node(monkeypatch):
    import os

    from fl.resident_supernode import task_retry_invoker

    killed = []
    monkeypatch.setattr(os, "kill", lambda *args: killed.append(args))
    giveup = task_retry_invoker().should_giveup
    assert giveup(_status_error(401)) is True  # Flower's policy would SIGINT the process here
    assert giveup(_status_error(503)) is False  # still retried
    assert killed == []
