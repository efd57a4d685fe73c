"""Flower strategies (``flwr.serverapp.strategy``) built from the run settings."""

from __future__ import annotations

from typing import Any

from flwr.serverapp import strategy as fs

from encoders.errors import ConfigError
from fl.settings import FederatedSettings

UNIT_WEIGHT = "unit-weight"
"""Metric every client reports as 1: the equal weights that DP accounting requires."""


def make_strategy(settings: FederatedSettings, n_clients: int) -> fs.Strategy:
    """The strategy named by ``settings.strategy``, sampling ``fraction-train`` of ``n_clients``.

    Client-side evaluation is off (``fraction_evaluate=0``): the server evaluates on held-out users.
    With ``dp-noise-multiplier > 0`` FedAvg (with equal client weights) is wrapped in Flower's
    ``DifferentialPrivacyClientSideFixedClipping``: clients clip their update (``fixedclipping_mod``),
    the server adds Gaussian noise, and an RDP accountant tracks (epsilon, delta).
    """
    if settings.dp_enabled:
        return dp_strategy(settings, n_clients)
    common: dict[str, Any] = {
        "fraction_train": settings.fraction_train,
        "fraction_evaluate": 0.0,
        "min_train_nodes": settings.min_train_nodes,
        "min_available_nodes": settings.min_train_nodes,
    }
    adaptive = {"eta": settings.eta, "eta_l": settings.eta_l, "beta_1": settings.beta_1,
                "beta_2": settings.beta_2, "tau": settings.tau}  # fmt: skip
    name = settings.strategy
    if name == "fedavg":
        return fs.FedAvg(**common)
    if name == "fedprox":
        return fs.FedProx(**common, proximal_mu=settings.proximal_mu)
    if name == "fedavgm":
        return fs.FedAvgM(**common, server_learning_rate=settings.server_lr, server_momentum=settings.server_momentum)
    if name == "fedadam":
        return fs.FedAdam(**common, **adaptive)
    if name == "fedyogi":
        return fs.FedYogi(**common, **adaptive)
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


def dp_strategy(settings: FederatedSettings, n_clients: int) -> fs.Strategy:
    """FedAvg under central DP with client-side clipping and an RDP accountant."""
    from flwr.supercore.privacy_accounting import NeighboringRelation, PrivacyConfig, SamplingMethod
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    base = fs.FedAvg(
        fraction_train=settings.fraction_train, fraction_evaluate=0.0, min_train_nodes=settings.min_train_nodes,
        min_available_nodes=settings.min_train_nodes, weighted_by_key=UNIT_WEIGHT,
    )  # fmt: skip
    accountant = RdpAccountant(
        PrivacyConfig(
            target_delta=settings.dp_delta,
            population_size=n_clients,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
    return fs.DifferentialPrivacyClientSideFixedClipping(
        base,
        noise_multiplier=settings.dp_noise_multiplier,
        clipping_norm=settings.dp_clipping_norm,
        num_sampled_clients=settings.sample_size(n_clients),
        accountant=accountant,
    )
