"""A Flower Grid that delivers each message to a ClientApp in this process.

The server's round logic (:func:`fl.server_app.run_rounds`) and the real ClientApp run unchanged,
without Ray or a SuperLink, so that many combinations of settings can each run a few rounds
quickly. A client that raises answers with an error message, as Flower's runtimes do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

FIRST_NODE_ID = 1001
SERVER_NODE_ID = 1


@contextmanager
def server_identity(run_id: int = 1) -> Iterator[None]:
    """The process-wide identity that Flower's runtimes give a ServerApp (messages carry it),
    restored afterwards."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, SERVER_NODE_ID
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


class InProcessGrid:
    """``n_nodes`` nodes with partition ids ``0..n_nodes-1`` served by ``client_app``."""

    def __init__(self, client_app: ClientApp, n_nodes: int) -> None:
        self.client_app = client_app
        self.contexts = {
            FIRST_NODE_ID + pid: Context(
                run_id=1,
                node_id=FIRST_NODE_ID + pid,
                node_config={"partition-id": pid, "num-partitions": n_nodes},
                state=RecordDict(),
                run_config={},
            )
            for pid in range(n_nodes)
        }
        self.delivered: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return list(reversed(self.contexts))  # not in partition order, as a real grid may list

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None):
        replies = []
        for message in messages:
            self.delivered.append(message)
            context = self.contexts[message.metadata.dst_node_id]
            try:
                replies.append(self.client_app(message, context))
            except Exception as exc:  # noqa: BLE001 - a crashed client, reported like Flower does
                replies.append(Message(Error(code=0, reason=repr(exc)), reply_to=message))
        return replies
