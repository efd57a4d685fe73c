"""The Simulation Runtime's dispatcher replacement: one pass over the stored messages gives each
virtual node its oldest undelivered message, at most one per node per sweep, and Flower's own
dispatcher is back after the block."""

from __future__ import annotations

import threading

from flwr.app import Message, RecordDict
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
from in_process_grid import server_identity

from simulations.vce_dispatch import linear_dispatch, next_message_per_node


def _state(messages: dict[str, Message], expired: set[str]) -> InMemoryLinkState:
    """An in-memory link state holding ``messages``; Flower's validity check (expiry, federation)
    is replaced by one that drops the ``expired`` ids, as the real check deletes invalid ones."""
    state = object.__new__(InMemoryLinkState)
    state.lock = threading.RLock()
    state.message_ins_store = dict(messages)
    checked: list[set[str]] = []

    def check(ids: set[str], run_id: int | None = None) -> None:
        checked.append(set(ids))
        for msg_id in ids & expired:
            state.message_ins_store.pop(msg_id, None)

    state._check_stored_messages = check
    state.checked = checked
    return state


def _message(node: int) -> Message:
    with server_identity():  # messages are created as a ServerApp creates them
        return Message(RecordDict(), dst_node_id=node, message_type="query")


def test_each_node_gets_its_oldest_message_once_per_sweep_and_only_its_own():
    m1a, m1b, m2, m3_expired, m9 = _message(1), _message(1), _message(2), _message(3), _message(9)
    state = _state({"a": m1a, "b": m1b, "c": m2, "d": m3_expired, "e": m9}, expired={"d"})
    nodes = {1: 0, 2: 1, 3: 2}  # node 9 is not a virtual node of this simulation

    first = next_message_per_node(state, nodes)
    assert first == [m1a, m2]  # the oldest of node 1, then node 2; the expired one is gone
    assert all(m.metadata.delivered_at != "" for m in first)
    assert m1b.metadata.delivered_at == "" and "d" not in state.message_ins_store
    assert state.checked[0] == {"a", "b", "c", "d", "e"}  # every stored message checked once

    assert next_message_per_node(state, nodes) == [m1b]
    assert next_message_per_node(state, nodes) == []
    assert m9.metadata.delivered_at == ""


def test_the_dispatcher_is_replaced_inside_the_block_and_restored_after():
    flowers = vce_api.add_messages_to_queue
    with linear_dispatch() as used:
        assert used
        assert vce_api.add_messages_to_queue is not flowers
    assert vce_api.add_messages_to_queue is flowers
