"""One client's local training, shared by every client (the ClientApp, the SecAgg+ client) and by
the in-process recipe sweep (``benchmarks/fl_recipe_sweep.py``).

:func:`train_locally` starts from the global state, trains on the client's own sequences as the
settings say, and leaves the trained weights in the network:

* ``local-epochs`` epochs over the client's windows (cut by the model spec's ``max_len``), in
  batches of ``local-batch-size`` windows (``0``: the model spec's batch size), so a client with a
  longer history takes more local steps when the batch is smaller than its window count;
* plain SGD at ``lr`` (``client-optimizer=sgd``, as in FedAvg / FedOpt), or a fresh AdamW at
  ``lr`` each round (``client-optimizer=adam``: client Adam whose state is reset every round);
* FedProx's proximal term when the strategy is ``fedprox`` with ``proximal_mu`` > 0;
* seeded by (seed, round, client), so a run follows from its seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fl.settings import FederatedSettings
from fl.task import State, local_train_config, set_state
from ranking.data import UserSequences
from ranking.models import SequenceModel
from ranking.seeding import seed_torch
from ranking.trainer import PlainSGD, train_epochs

__all__ = ["client_seed", "train_locally"]


def client_seed(settings: FederatedSettings, round_: int, pid: int) -> int:
    """The seed of one client's local training in one round."""
    return settings.seed * 100_003 + round_ * 1_009 + pid


def _proximal_penalty(
    settings: FederatedSettings, network: torch.nn.Module
) -> Callable[[torch.nn.Module], torch.Tensor] | None:
    strategy = settings.strategy
    if strategy.name != "fedprox" or strategy.settings.proximal_mu <= 0:
        return None
    anchor = [p.detach().clone() for p in network.parameters()]
    mu = strategy.settings.proximal_mu

    def penalty(model: torch.nn.Module) -> torch.Tensor:
        return (
            0.5
            * mu
            * sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
        )

    return penalty


def train_locally(
    settings: FederatedSettings,
    network: SequenceModel,
    global_state: State,
    sequences: UserSequences,
    round_: int,
    pid: int,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Load ``global_state`` into ``network`` and train it on ``sequences`` for one round.

    Returns :func:`ranking.trainer.train_epochs`'s result (loss, targets, steps, seconds).
    ``max_steps`` is a device's cap on local optimizer steps (``None``: no cap).
    """
    set_state(network, global_state)
    # a reused network keeps requires_grad from the last call: set it every time
    network.item_emb.ids.weight.requires_grad_(not settings.freeze_item_table)
    cfg = local_train_config(settings, seed=client_seed(settings, round_, pid))
    if settings.local_batch_size:
        cfg = cfg.replace(batch_size=settings.local_batch_size)
    seed_torch(cfg.seed)
    optimizer = (
        PlainSGD(network.parameters(), lr=settings.lr)
        if settings.client_optimizer == "sgd"
        else None  # train_epochs builds a fresh AdamW at cfg.lr: Adam state reset every round
    )
    return train_epochs(
        network,
        sequences,
        cfg,
        settings.local_epochs,
        penalty=_proximal_penalty(settings, network),
        optimizer=optimizer,
        max_steps=max_steps,
    )
