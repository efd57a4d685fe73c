"""``tandem-supernode``: a Flower SuperNode whose ClientApp stays loaded between rounds.

In Flower 1.42 ``flower-supernode`` (``--isolation subprocess``, the default) starts a
``flower-superexec`` process that starts a fresh ``flwr-clientapp`` process for every message: every
round pays a Python, torch and Flower start (seconds on a small device), and three interpreters
hold memory at once. ``--isolation process`` lets a process outside the SuperNode execute the
ClientApp tasks instead. ``tandem-supernode`` is Flower's own SuperNode (the same command line,
the same Fleet connection, node state and Runtime API) run with ``--isolation process``, plus that
executor on a thread of the same process: it acquires each ClientApp task from the Runtime API
with its token, pulls the message, runs the app and pushes the reply and the task's status, as
``flwr-clientapp`` does, and then waits for the next task with torch and the app still imported.

The app is loaded from the Flower App Bundle that the run shipped (installed under the Flower home
as ``flwr-clientapp`` installs it), never from modules of the same name loaded elsewhere; a task of
another bundle unloads the previous bundle's modules first.

    tandem-supernode --insecure --superlink 127.0.0.1:9092 --node-config "data-path='local.npz'"
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from logging import DEBUG, ERROR, INFO, WARNING
from pathlib import Path

import httpx
from flwr.app import Context, Message
from flwr.app.error import Error
from flwr.cli.install import install_from_fab
from flwr.clientapp.client_app import ClientApp, LoadClientAppError
from flwr.common.config import get_project_config, get_project_dir
from flwr.common.constant import ErrorCode, SubStatus
from flwr.common.serde import context_from_proto, fab_from_proto, run_from_proto
from flwr.proto.node_pb2 import Node  # pylint: disable=E0611
from flwr.proto.runtime_pb2 import (  # pylint: disable=E0611
    AcquireTaskRequest,
    PullAppMessagesRequest,
    PullTaskInputRequest,
    SendTaskHeartbeatRequest,
)
from flwr.supercore import log
from flwr.supercore.constant import TaskType
from flwr.supercore.fab import Fab
from flwr.supercore.heartbeat import HeartbeatSender
from flwr.supercore.inflatable.inflatable_protobuf_utils import (
    make_confirm_message_received_fn_protobuf,
    make_pull_object_fn_protobuf,
)
from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
)
from flwr.supercore.object_ref import load_app
from flwr.supercore.retry import RetryInvoker, make_simple_http_retry_invoker
from flwr.supercore.run import Run, RunNotRunningException
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supercore.task_identity import TaskIdentity
from flwr.supercore.tls import validate_and_resolve_root_certificates
from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode, flower_supernode
from flwr.supernode.runtime.run_clientapp import push_message, push_task_output

POLL_SECONDS = 0.05
"""How often the executor asks the Runtime API for a task while idle (flower-superexec: 1 s)."""


MALLOC_ARENAS = 2
"""glibc's malloc arenas for the whole process (``MALLOC_ARENA_MAX`` in the environment wins): by
default glibc gives every thread that allocates its own arena (up to 8 per core), and the
SuperNode runs a dozen threads (gRPC, the Runtime API, heartbeats, this executor); two arenas
kept the peak about 15 MB lower in ``benchmarks/edge_supernode.py``."""

M_ARENA_MAX = -8  # glibc's malloc.h

OBJECT_BACKOFF_SECONDS = 0.05
"""First wait when a message's objects are not in the SuperNode's store yet. The executor takes a
task as soon as the SuperNode creates it, while the SuperNode is still pulling the message's
objects from the SuperLink; Flower's default first wait (1 s, doubling) cost every round a second."""

MESSAGE_WAIT_SECONDS = 30.0
"""How long a task's message may take to appear in the SuperNode's store after the task does."""

UNSUPPORTED_FLAGS = {
    "--superexec-auth-secret-file": "the executor runs inside the SuperNode's process",
    "--allow-runtime-dependency-installation": "the client install provides the app's packages",
}


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Limit glibc's malloc arenas (before threads start); False where that is not possible."""
    libc = _libc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def release_free_memory() -> None:
    """After a task: hand freed heap pages back to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class ResidentSupernodeError(ValueError):
    """A ``tandem-supernode`` command line that cannot run (e.g. another isolation mode)."""


def supernode_argv(argv: Sequence[str]) -> list[str]:
    """Flower's SuperNode arguments with ``--isolation process`` (the executor runs here)."""
    args = list(argv)
    for word in args:
        flag = word.split("=", 1)[0]
        if flag in UNSUPPORTED_FLAGS:
            raise ResidentSupernodeError(
                f"tandem-supernode does not support {flag}: {UNSUPPORTED_FLAGS[flag]} "
                "(use flower-supernode)"
            )
    for i, word in enumerate(args):
        value = word.split("=", 1)[1] if word.startswith("--isolation=") else None
        if word == "--isolation" and i + 1 < len(args):
            value = args[i + 1]
        if value is not None and value != "process":
            raise ResidentSupernodeError(
                f"tandem-supernode runs the ClientApp in its own process: --isolation {value} is "
                "not supported (leave it out, or use flower-supernode)"
            )
        if value is not None:
            return args
    return [*args, "--isolation", "process"]


def runtime_api(argv: Sequence[str]) -> tuple[str, bool, bytes | None]:
    """Where this SuperNode serves its Runtime API: (address, insecure, root certificates)."""
    parsed, _ = _parse_args_run_supernode().parse_known_args(list(argv))
    host = "127.0.0.1" if parsed.host in ("0.0.0.0", "") else str(parsed.host)
    host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
    insecure = parsed.ssl_ca_certfile is None
    certificates = validate_and_resolve_root_certificates(parsed.ssl_ca_certfile, insecure)
    return f"{host}:{parsed.port}", insecure, certificates


class ResidentClientApps:
    """Executes this node's ClientApp tasks in the current process, one at a time."""

    def __init__(self, address: str, insecure: bool, certificates: bytes | None) -> None:
        self.address, self.insecure, self.certificates = address, insecure, certificates
        self.app_dir: Path | None = None

    def _client(self, *interceptors: object) -> RuntimeHttpClient:
        return RuntimeHttpClient.from_server_address(
            server_address=self.address,
            insecure=self.insecure,
            root_certificates=self.certificates,
            interceptors=list(interceptors),
            retry_invoker=task_retry_invoker(),
        )

    def serve(self, stop: threading.Event) -> None:
        """Acquire and run tasks until ``stop`` is set (the process exits with the SuperNode)."""
        client = self._client(RuntimeVersionHttpInterceptor(component_name="SuperExec"))
        request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
        while not stop.is_set():
            try:
                reply = client.AcquireTask(request)
            except Exception as ex:  # the Runtime API is starting or the SuperNode is stopping
                log(DEBUG, "tandem-supernode: no task yet (%s)", ex)
                stop.wait(1.0)
                continue
            if reply.HasField("task") and reply.token:
                try:
                    self.run_task(reply.token)
                except (Exception, RunNotRunningException) as ex:  # the node keeps serving
                    log(ERROR, "tandem-supernode: task could not be completed", exc_info=ex)
            else:
                stop.wait(POLL_SECONDS)

    def run_task(self, token: str) -> None:
        """One ClientApp task: what ``flwr-clientapp`` does, without leaving the process."""
        client = self._client(
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
            RuntimeTokenHttpInterceptor(token),
        )
        started = time.perf_counter()
        heartbeat = HeartbeatSender(task_heartbeat(client))
        heartbeat.start()
        message = reply = context = None
        status, details = SubStatus.FAILED, "ClientApp task failed"
        try:
            message, context, run, fab = pull_task_input(client)
            install_from_fab(fab.content, skip_prompt=True)
            app = self.load(get_project_dir(run.fab_id, run.fab_version, fab.hash_str))
            reply = app(message=message, context=context)
            status, details = SubStatus.COMPLETED, ""
        except RunNotRunningException:  # the run was stopped: nobody waits for a reply
            reply, status, details = None, SubStatus.STOPPED, "the run is no longer running"
        except Exception as ex:  # the app's error goes back to the server, as in flwr-clientapp
            code = ErrorCode.CLIENT_APP_RAISED_EXCEPTION
            if isinstance(ex, LoadClientAppError):
                code = ErrorCode.LOAD_CLIENT_APP_EXCEPTION
            details = f"{type(ex)}:<'{ex}'>"
            log(ERROR, "ClientApp raised an exception", exc_info=ex)
            if message is not None:
                reply = Message(Error(code=code, reason=details), reply_to=message)
        finally:
            if heartbeat.is_running:  # no heartbeat may race the task's end
                heartbeat.stop()
            try:
                if reply is not None and context is not None:
                    push_message(client, reply, context)
            except (Exception, RunNotRunningException) as ex:
                log(ERROR, "tandem-supernode: failed to push the reply", exc_info=ex)
                status, details = SubStatus.FAILED, f"reply not delivered: {ex}"
            try:
                push_task_output(client=client, context=context, sub_status=status, details=details)
            except (Exception, RunNotRunningException) as ex:
                log(ERROR, "tandem-supernode: failed to report the task's status", exc_info=ex)
            client.close()
            release_free_memory()
            kind = message.metadata.message_type if message is not None else "unknown"
            seconds = time.perf_counter() - started
            log(INFO, "tandem-supernode: %s task %s in %.3f s", kind, status, seconds)

    def load(self, app_dir: Path) -> ClientApp:
        """The bundle's ClientApp, imported from ``app_dir`` (and only from there)."""
        if app_dir != self.app_dir:
            forget_modules_of(app_dir, self.app_dir)
            self.app_dir = app_dir
        try:
            config = get_project_config(app_dir)
            reference = config["tool"]["flwr"]["app"]["components"]["clientapp"]
        except Exception as ex:
            raise LoadClientAppError(f"the bundle in {app_dir} names no ClientApp: {ex}") from ex
        app = load_app(reference, LoadClientAppError, app_dir)
        if not isinstance(app, ClientApp):
            raise LoadClientAppError(f"{reference} in {app_dir} is not a ClientApp")
        return app


def task_retry_invoker() -> RetryInvoker:
    """Flower's Runtime API retry policy, except that a 401 (a task token revoked or expired) fails
    the call: Flower's policy sends SIGINT to its own process then, which here is the SuperNode."""
    invoker = make_simple_http_retry_invoker()
    flower_policy = invoker.should_giveup

    def should_giveup(exc: Exception) -> bool:
        if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 401:
            return True
        return flower_policy(exc) if flower_policy is not None else False

    invoker.should_giveup = should_giveup
    return invoker


def pull_task_input(client: RuntimeHttpClient) -> tuple[Message, Context, Run, Fab]:
    """The task's message, context, run and bundle (as Flower's ``flwr-clientapp`` pulls them, but
    waiting :data:`OBJECT_BACKOFF_SECONDS` first for objects still on their way)."""
    task = client.PullTaskInput(PullTaskInputRequest())
    TaskIdentity.task_id, TaskIdentity.run_id = task.task_id, task.run.run_id
    TaskIdentity.node_id = task.context.node_id
    context = context_from_proto(task.context)
    pulled = client.PullMessages(PullAppMessagesRequest())
    wait, deadline = OBJECT_BACKOFF_SECONDS, time.monotonic() + MESSAGE_WAIT_SECONDS
    while not pulled.messages_list and time.monotonic() < deadline:
        time.sleep(wait)  # the SuperNode creates the task just before it stores the message
        wait = min(2 * wait, 1.0)
        pulled = client.PullMessages(PullAppMessagesRequest())
    if not pulled.messages_list:
        raise RuntimeError(
            f"the SuperNode's Runtime API returned no message for this task in "
            f"{MESSAGE_WAIT_SECONDS:.0f} s"
        )
    node, tree = Node(node_id=context.node_id), pulled.message_object_trees[0]
    message = pull_and_inflate_object_from_tree(
        tree,
        make_pull_object_fn_protobuf(client.PullObject, node, context.run_id),
        make_confirm_message_received_fn_protobuf(
            client.ConfirmMessageReceived, node, context.run_id
        ),
        return_type=Message,
        max_tries_per_object=None,  # Flower's overall limit (2 h) still applies
        initial_backoff=OBJECT_BACKOFF_SECONDS,
        backoff_cap=1.0,
    )
    message.metadata.__dict__["_message_id"] = tree.object_id
    return message, context, run_from_proto(task.run), fab_from_proto(task.fab)


def task_heartbeat(client: RuntimeHttpClient) -> Callable[[], bool]:
    """A task's heartbeat that stops beating, rather than stopping the process, once the SuperNode
    no longer knows the task: ``flwr-clientapp``'s raises SIGINT then, which here would stop the
    SuperNode itself. (A revoked token answers 401; :func:`task_retry_invoker` turns that into an
    error of the call.)"""
    request, gone = SendTaskHeartbeatRequest(), threading.Event()

    def beat() -> bool:
        if gone.is_set():
            return True
        try:
            known = client.SendTaskHeartbeat(request).success
        except httpx.TransportError:
            return False  # retried with backoff by HeartbeatSender
        except httpx.HTTPStatusError as err:
            if err.response.status_code in (503, 504):
                return False
            known = False
        except RunNotRunningException:
            known = False
        if not known:
            gone.set()
            log(WARNING, "tandem-supernode: the SuperNode no longer knows the running task")
        return True

    return beat


def forget_modules_of(app_dir: Path, previous: Path | None) -> None:
    """Unload the modules of ``app_dir``'s top-level packages that were not imported from it (an
    installed copy, or the previous bundle ``previous``), so that the next import reads the bundle."""
    if previous is not None and str(previous) in sys.path:
        sys.path.remove(str(previous))
    tops = {p.stem for p in app_dir.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    tops -= set(sys.stdlib_module_names)  # a bundle never replaces the standard library
    root = app_dir.resolve()
    for name in [m for m in list(sys.modules) if m.split(".", 1)[0] in tops]:
        origin = getattr(sys.modules[name], "__file__", None)
        if origin is None or not Path(origin).resolve().is_relative_to(root):
            del sys.modules[name]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        args = supernode_argv(args)
        address, insecure, certificates = runtime_api(args)
    except ResidentSupernodeError as err:
        raise SystemExit(f"tandem-supernode: {err}") from None
    cap_malloc_arenas()
    executor = ResidentClientApps(address, insecure, certificates)
    stop = threading.Event()
    thread = threading.Thread(target=executor.serve, args=(stop,), name="resident-clientapp")
    thread.daemon = True  # Flower's SuperNode ends the process on SIGTERM / SIGINT
    thread.start()
    log(INFO, "tandem-supernode: ClientApp tasks run in this process (Runtime API %s)", address)
    sys.argv = ["tandem-supernode", *args]
    try:
        flower_supernode()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
