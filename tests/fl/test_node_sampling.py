"""Round 1 waits for the nodes: Flower sizes a round's sample from the nodes connected when the
round starts, so without the wait a first round that starts during registration samples too few."""

from __future__ import annotations

import pytest
from flwr.app import ArrayRecord, ConfigRecord
from in_process_grid import server_identity

from fl.node_sampling import OrderedGrid, configure_round, wait_for_nodes
from fl.settings import FederatedSettings
from fl.strategies import make_strategy
from ranking.errors import ConfigError


class RegisteringGrid:
    """A grid whose SuperNodes register one at a time: each listing shows one more node."""

    def __init__(self, n_nodes: int):
        self.n_nodes = n_nodes
        self.listed = 0

    def get_node_ids(self) -> list[int]:
        self.listed = min(self.listed + 1, self.n_nodes)
        return list(range(100, 100 + self.listed))


def first_round_messages(grid: RegisteringGrid) -> list:
    """Round 1's train messages of FedAvg sampling every node (fraction 1)."""
    settings = FederatedSettings.create(fraction_train=1.0, min_train_nodes=1)
    strategy = make_strategy(settings, grid.n_nodes)
    with server_identity():
        messages, _ = configure_round(
            strategy, settings, 1, ArrayRecord(), ConfigRecord(), OrderedGrid(grid, {})
        )
    return messages


def test_the_wait_returns_once_every_node_is_connected_and_round_one_samples_them_all():
    grid = RegisteringGrid(9)
    assert wait_for_nodes(grid, 9, timeout=30, poll=0) == 9
    messages = first_round_messages(grid)
    assert sorted(m.metadata.dst_node_id for m in messages) == list(range(100, 109))


def test_without_the_wait_flower_samples_only_the_nodes_connected_at_the_start():
    """The behaviour the wait exists for (if Flower fixes it, the wait is merely harmless)."""
    grid = RegisteringGrid(9)
    messages = first_round_messages(grid)
    assert len(messages) < 9


def test_too_few_nodes_within_the_timeout_is_an_error_naming_the_counts():
    grid = RegisteringGrid(2)
    with pytest.raises(TimeoutError, match="2 of 5 nodes connected"):
        wait_for_nodes(grid, 5, timeout=0.05, poll=0.01)


def test_the_wait_covers_min_train_nodes_and_a_negative_count_is_refused():
    assert FederatedSettings.create(min_train_nodes=3).nodes_to_wait_for == 3
    assert FederatedSettings.create(min_train_nodes=3, min_available_nodes=8).nodes_to_wait_for == 8
    with pytest.raises(ConfigError, match="min_available_nodes"):
        FederatedSettings.create(min_available_nodes=-1)
