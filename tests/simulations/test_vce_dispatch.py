"""The Simulation Runtime's dispatcher replacement: one pass over the stored messages gives each
virtual node its oldest undelivered message, at most one per node per sweep, and Flower's own
dispatcher is back after the block."""

from __future__ import annotations

import importlib
import threading

import pytest
from flwr.app import Message, RecordDict
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
from in_process_grid import server_identity

from simulations.vce_dispatch import (
    BUSY_SHARE,
    PULL_INTERVAL_S,
    linear_dispatch,
    next_message_per_node,
    pause_after,
)


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


class _NoState:
    def state(self):
        return None


def test_the_dispatcher_and_the_grid_are_replaced_inside_the_block_and_restored_after():
    simulation_module = importlib.import_module("flwr.simulation.run_simulation")
    flowers, flowers_grid = vce_api.add_messages_to_queue, simulation_module.InMemoryGrid
    with linear_dispatch() as used:
        assert used
        assert vce_api.add_messages_to_queue is not flowers
        grid = simulation_module.InMemoryGrid(state_factory=_NoState())
        assert isinstance(grid, flowers_grid) and grid.pull_interval <= PULL_INTERVAL_S < 0.1
    assert vce_api.add_messages_to_queue is flowers
    assert simulation_module.InMemoryGrid is flowers_grid
    assert flowers_grid(state_factory=_NoState()).pull_interval == 0.1


def test_a_slow_pass_lengthens_the_pause_so_the_loop_stays_mostly_idle():
    assert pause_after(0.001, 0.02) == 0.02  # a round's 90 messages: the shortest pause
    long_pass = 0.05  # e.g. one query to each of 18,000 nodes in flight
    pause = pause_after(long_pass, 0.02)
    assert long_pass / (long_pass + pause) == pytest.approx(BUSY_SHARE)
