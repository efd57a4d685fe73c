"""Flower's simulation dispatcher, made linear in the number of virtual nodes.

In Flower 1.42 the Simulation Runtime hands messages to its Ray workers from a thread that, every
0.1 s, asks the link state once per virtual node for that node's next message
(``vce_api.add_messages_to_queue``). The in-memory link state answers each such call by checking
every stored message (expiry and federation membership) and then scanning them all, so one sweep
costs (nodes x stored messages) checks, holds the state's lock throughout, and keeps a core busy
under the GIL. With 901 nodes and 90 messages a round that is about 81,000 checks every 0.1 s; with
18,000 nodes and one query per node it is 324 million, and the run does not get past its first
round.

:func:`linear_dispatch` replaces that thread's function, for the duration of a simulation, with one
that takes the same lock, checks every stored message once and picks, in one pass, the oldest
undelivered message of each virtual node: at most one message per node per sweep, marked as
delivered, as Flower's does (a node's context is never used by two workers at once). The rest of the
runtime (workers, Ray backend, reply path) is Flower's. When the installed Flower does not have the
internals this relies on, the original dispatcher is kept and a warning says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Queue
from typing import Any

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 0.1
"""Pause between sweeps, as in Flower's own dispatcher."""


def next_message_per_node(state: Any, nodes: Any) -> list[Any]:
    """The oldest undelivered message of each node in ``nodes`` (marked as delivered), from one
    pass over the in-memory link state's stored messages."""
    from flwr.supercore.date import now

    picked: dict[int, Any] = {}
    with state.lock:
        stored = list(state.message_ins_store)
        state._check_stored_messages(set(stored))  # expired / foreign messages are dropped here
        for msg_id in stored:
            message = state.message_ins_store.get(msg_id)
            if message is None or message.metadata.delivered_at != "":
                continue
            node = message.metadata.dst_node_id
            if node in nodes and node not in picked:
                picked[node] = message
        delivered_at = now().isoformat()
        for message in picked.values():
            message.metadata.delivered_at = delivered_at
    return list(picked.values())


def _supported() -> bool:
    try:
        from flwr.server.superlink.fleet.vce import vce_api
        from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
    except ImportError:
        return False
    return hasattr(vce_api, "add_messages_to_queue") and hasattr(
        InMemoryLinkState, "_check_stored_messages"
    )


@contextmanager
def linear_dispatch() -> Iterator[bool]:
    """Use :func:`next_message_per_node` as the Simulation Runtime's dispatcher inside the block;
    yields whether it is in use."""
    if not _supported():
        log.warning("this Flower has no in-memory VCE dispatcher to replace; keeping Flower's own")
        yield False
        return
    from flwr.server.superlink.fleet.vce import vce_api
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState

    flowers = vce_api.add_messages_to_queue

    def add_messages_to_queue(
        state: Any, queue: Queue, nodes_mapping: dict[int, int], f_stop: threading.Event
    ) -> None:
        """Drop-in for Flower's (same arguments, same loop); a link state other than the
        in-memory one goes to Flower's own."""
        if not isinstance(state, InMemoryLinkState):
            flowers(state, queue, nodes_mapping, f_stop)
            return
        while not f_stop.is_set():
            for message in next_message_per_node(state, nodes_mapping):
                queue.put(message)
            f_stop.wait(SWEEP_INTERVAL_S)

    vce_api.add_messages_to_queue = add_messages_to_queue
    try:
        yield True
    finally:
        vce_api.add_messages_to_queue = flowers
