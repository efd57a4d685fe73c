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

import importlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Queue
from typing import Any

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 0.02
"""Shortest pause between sweeps (Flower's own dispatcher: 0.1 s). A sweep is one pass over the
stored messages, so with a round's 90 messages sweeping five times as often costs little, and a
round's messages reach the workers sooner: a round waits for the next sweep once, at its start."""

PULL_INTERVAL_S = 0.02
"""Shortest pause between the ServerApp's checks for replies inside the block (Flower's in-memory
grid: 0.1 s): a round waits for the next check once, at its end."""

BUSY_SHARE = 0.2
"""Each polling loop (sweeps, reply checks) keeps at most about this share of a core: with 18,000
messages in flight (one query per node of the 20,000-user world) one pass takes tens of
milliseconds, and the pause grows with it."""


def pause_after(work_s: float, shortest_s: float) -> float:
    """The pause after a pass that took ``work_s``: at least ``shortest_s``, and long enough that
    the loop is busy at most :data:`BUSY_SHARE` of the time."""
    return max(shortest_s, work_s * (1 - BUSY_SHARE) / BUSY_SHARE)


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
            started = time.perf_counter()
            for message in next_message_per_node(state, nodes_mapping):
                queue.put(message)
            f_stop.wait(pause_after(time.perf_counter() - started, SWEEP_INTERVAL_S))

    simulation_module = importlib.import_module("flwr.simulation.run_simulation")
    flowers_grid = getattr(simulation_module, "InMemoryGrid", None)
    if flowers_grid is not None:

        class PromptGrid(flowers_grid):  # type: ignore[misc, valid-type]
            """Flower's in-memory grid, checking for replies every :data:`PULL_INTERVAL_S`, or
            less often when a check takes long (:func:`pause_after`)."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.pull_interval = min(self.pull_interval, PULL_INTERVAL_S)

            def pull_messages(self, message_ids: Any) -> Any:
                started = time.perf_counter()
                replies = super().pull_messages(message_ids)
                self.pull_interval = pause_after(time.perf_counter() - started, PULL_INTERVAL_S)
                return replies

        simulation_module.InMemoryGrid = PromptGrid

    vce_api.add_messages_to_queue = add_messages_to_queue
    try:
        yield True
    finally:
        vce_api.add_messages_to_queue = flowers
        if flowers_grid is not None:
            simulation_module.InMemoryGrid = flowers_grid
