"""Which nodes train in a round: a fixed node order, and fixed-size or Poisson sampling.

Flower lists connected nodes in no particular order and samples them with Python's ``random``.
For a run to follow from its seed alone, the server asks every node once for its partition id
(:func:`node_partitions`), lists nodes in that order (:class:`OrderedGrid`) and seeds the
sampling by (seed, round). With ``fl.client-sampling=poisson`` each node trains independently with
probability ``fraction-train`` (:func:`poisson_sample`), the sampling that DP accounting with
amplification assumes.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

if TYPE_CHECKING:
    from fl.settings import FederatedSettings

__all__ = [
    "OrderedGrid",
    "configure_round",
    "node_partitions",
    "poisson_sample",
    "wait_for_nodes",
]


def wait_for_nodes(grid: Grid, count: int, timeout: float, poll: float = 0.2) -> int:
    """Wait until ``count`` nodes are connected; the number connected.

    Flower's strategies size a round's sample from the nodes connected when the round starts and
    only then wait for their minimum, so a first round that starts while the SuperNodes are still
    registering samples too few of them. Waiting here first makes round 1 like every other round.
    Raises ``TimeoutError`` naming the counts when fewer than ``count`` connect within ``timeout``
    seconds.
    """
    deadline = time.monotonic() + timeout
    while (connected := len(list(grid.get_node_ids()))) < count:
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"fl.min-available-nodes: {connected} of {count} nodes connected after "
                f"{timeout:g} s; start more SuperNodes or lower fl.min-available-nodes"
            )
        time.sleep(poll)
    return connected


def node_partitions(grid: Grid, timeout: float) -> dict[int, int]:
    """Each connected node's partition id, asked once with a query message (nodes that do not
    answer rank last)."""
    nodes = sorted(grid.get_node_ids())
    queries = [
        Message(RecordDict(), dst_node_id=node, message_type=MessageType.QUERY) for node in nodes
    ]
    found: dict[int, int] = {}
    for reply in grid.send_and_receive(queries, timeout=timeout):
        if not reply.has_error():
            found[reply.metadata.src_node_id] = int(reply.content["metrics"]["partition-id"])
    return found


class OrderedGrid:
    """The run's Grid, listing nodes by partition id (then node id) instead of in an arbitrary
    order, so that seeded sampling picks the same partitions in every run."""

    def __init__(self, grid: Grid, partitions: dict[int, int], only: list[int] | None = None):
        self._grid = grid
        self._partitions = partitions
        self._only = only

    def rank(self, node: int) -> tuple[int, int]:
        return (self._partitions.get(node, 2**62), node)

    def get_node_ids(self) -> list[int]:
        nodes = self._grid.get_node_ids() if self._only is None else self._only
        return sorted(nodes, key=self.rank)

    def restricted(self, nodes: list[int]) -> OrderedGrid:
        """The same grid listing only ``nodes``."""
        return OrderedGrid(self._grid, self._partitions, list(nodes))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


def poisson_sample(nodes: list[int], rate: float, seed: int, round_: int) -> list[int]:
    """Each of ``nodes`` independently with probability ``rate`` (seeded by seed and round)."""
    rng = np.random.default_rng([seed, round_, 13])
    return [node for node, u in zip(nodes, rng.random(len(nodes)), strict=True) if u < rate]


def configure_round(
    strategy: Any,
    settings: FederatedSettings,
    round_: int,
    arrays: ArrayRecord,
    config: ConfigRecord,
    grid: OrderedGrid,
) -> tuple[list[Message], Message]:
    """The round's train messages, and one message that an aggregate can reply to.

    Fixed-size sampling is the strategy's own (``random``, seeded here). Poisson sampling picks the
    nodes first; the strategy (built with ``fraction-train`` 1) then configures exactly those. An
    empty Poisson sample still configures the strategy (its server optimiser tracks the current
    model) on one node, whose message is not sent.
    """
    if settings.poisson_sampling:
        nodes = grid.get_node_ids()
        chosen = poisson_sample(nodes, settings.fraction_train, settings.seed, round_)
        messages = list(
            strategy.configure_train(round_, arrays, config, grid.restricted(chosen or nodes[:1]))
        )
        return (messages if chosen else []), messages[0]
    random.seed(settings.seed * 1_000_003 + round_)  # Flower samples nodes with `random`
    messages = list(strategy.configure_train(round_, arrays, config, grid))
    return messages, messages[0]
