"""Flower strategies (``flwr.serverapp.strategy``) built from the run settings."""

from __future__ import annotations

from typing import Any

from flwr.serverapp import strategy as fs

from encoders.errors import ConfigError
from fl.settings import FederatedSettings


def make_strategy(settings: FederatedSettings) -> fs.Strategy:
    """The strategy named by ``settings.strategy``, sampling ``fraction-train`` of the clients.

    Client-side evaluation is off (``fraction_evaluate=0``): the server evaluates on held-out users.
    """
    common: dict[str, Any] = {
        "fraction_train": settings.fraction_train,
        "fraction_evaluate": 0.0,
        "min_train_nodes": settings.min_train_nodes,
        "min_available_nodes": settings.min_train_nodes,
    }
    name = settings.strategy
    if name == "fedavg":
        return fs.FedAvg(**common)
    if name == "fedprox":
        return fs.FedProx(**common, proximal_mu=settings.proximal_mu)
    if name == "fedavgm":
        return fs.FedAvgM(**common, server_learning_rate=settings.server_lr, server_momentum=settings.server_momentum)
    if name == "fedadam":
        return fs.FedAdam(**common, eta=settings.eta, eta_l=settings.eta_l)
    if name == "fedyogi":
        return fs.FedYogi(**common, eta=settings.eta, eta_l=settings.eta_l)
    if name == "krum":
        return fs.Krum(**common, num_malicious_nodes=settings.num_malicious_nodes)
    if name == "multikrum":
        return fs.MultiKrum(
            **common, num_malicious_nodes=settings.num_malicious_nodes, num_nodes_to_select=settings.num_nodes_to_select
        )
    if name == "fedtrimmedavg":
        return fs.FedTrimmedAvg(**common, beta=settings.trim_beta)
    if name == "fedmedian":
        return fs.FedMedian(**common)
    raise ConfigError(f"unknown strategy {name!r}")
