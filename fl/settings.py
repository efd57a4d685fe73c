"""Settings of a federated run, read from Flower's ``run_config`` (keys with hyphens).

The same dataclass serves every way of running: the Hydra entry point bakes settings into the apps,
``flwr run .`` reads ``[tool.flwr.app.config]`` from ``pyproject.toml`` (and ``--run-config``), and
a deployed SuperNode adds its own ``node_config`` (``data-path``, ``partition-id``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from encoders.errors import ConfigError

STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedavgm", "krum", "multikrum", "fedtrimmedavg", "fedmedian")
ENCODINGS = ("dense", "row-sparse")
SPARSE_STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedavgm")


@dataclass(frozen=True)
class FederatedSettings:
    """Every setting of a federated run (``run_config`` key = field name with ``-`` for ``_``)."""

    # data: a dataset file written by ranking.storage.save_dataset, or the synthetic world
    data_path: str = ""
    world_n_items: int = 2000
    world_n_users: int = 1000
    seed: int = 0
    heldout_fraction: float = 0.1
    partition: str = "one_user_per_client"
    users_per_client: int = 10
    n_clients: int = 10
    dirichlet_alpha: float = 0.5
    # model
    model: str = "sasrec"
    hidden: int = 64
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.1
    max_len: int = 50
    # rounds and local training
    num_rounds: int = 20
    fraction_train: float = 0.1
    min_train_nodes: int = 2
    local_epochs: int = 1
    client_optimizer: str = "sgd"
    lr: float = 1.0
    batch_size: int = 128
    loss: str = "ce"
    timeout: float = 600.0
    # strategy
    strategy: str = "fedadam"
    proximal_mu: float = 0.01
    server_lr: float = 1.0
    server_momentum: float = 0.9
    eta: float = 3e-3
    eta_l: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    tau: float = 1e-8
    num_malicious_nodes: int = 0
    num_nodes_to_select: int = 1
    trim_beta: float = 0.2
    # differential privacy: client-side clipping + server-side Gaussian noise (0 = off)
    dp_noise_multiplier: float = 0.0
    dp_clipping_norm: float = 1.0
    dp_delta: float = 1e-5
    # communication
    update_encoding: str = "dense"
    sparse_extra_rows: int = 200  # row-sparse: also send the rows that moved most (softmax negatives)
    quantize: str = "none"
    # faults and attacks (simulation only)
    drop_fraction: float = 0.0
    byzantine_fraction: float = 0.0
    byzantine_mode: str = "signflip"
    byzantine_factor: float = 1.0
    # outputs
    run_dir: str = ""
    eval_every: int = 1

    def __post_init__(self) -> None:
        checks = [
            (self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}, got {self.strategy!r}"),
            (self.update_encoding in ENCODINGS, f"update-encoding must be one of {ENCODINGS}"),
            (self.quantize in ("none", "fp16", "int8"), "quantize must be none, fp16 or int8"),
            (self.sparse_extra_rows >= 0, "sparse-extra-rows must be >= 0"),
            (self.num_rounds >= 0, "num-rounds must be >= 0"),
            (0 < self.fraction_train <= 1, "fraction-train must lie in (0, 1]"),
            (self.min_train_nodes >= 1, "min-train-nodes must be >= 1"),
            (self.local_epochs >= 1, "local-epochs must be >= 1"),
            (self.client_optimizer in ("sgd", "adam"), "client-optimizer must be sgd or adam"),
            (self.lr > 0, "lr must be > 0"),
            (self.eta > 0 and self.tau > 0, "eta and tau must be > 0"),
            (0 <= self.beta_1 < 1 and 0 <= self.beta_2 < 1, "beta-1 and beta-2 must lie in [0, 1)"),
            (0 < self.heldout_fraction < 1, "heldout-fraction must lie in (0, 1)"),
            (0 <= self.drop_fraction < 1, "drop-fraction must lie in [0, 1)"),
            (0 <= self.byzantine_fraction < 1, "byzantine-fraction must lie in [0, 1)"),
            (self.byzantine_mode in ("scale", "signflip"), "byzantine-mode must be scale or signflip"),
            (self.eval_every >= 1, "eval-every must be >= 1"),
            (
                self.update_encoding == "dense" or self.strategy in SPARSE_STRATEGIES,
                f"row-sparse updates are averaged per row before the server optimizer; use one of "
                f"{SPARSE_STRATEGIES} (robust aggregators need dense updates)",
            ),
            (self.dp_noise_multiplier >= 0, "dp-noise-multiplier must be >= 0"),
            (self.dp_clipping_norm > 0, "dp-clipping-norm must be > 0"),
            (0 < self.dp_delta < 1, "dp-delta must lie in (0, 1)"),
            (
                not self.dp_enabled or (self.strategy == "fedavg" and self.update_encoding == "dense" and self.quantize == "none"),
                "differential privacy needs strategy=fedavg with dense, unquantised updates (the accountant "
                "requires FedAvg aggregation and clipping compares whole models)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"federated settings: {message}")

    @property
    def dp_enabled(self) -> bool:
        return self.dp_noise_multiplier > 0

    def sample_size(self, n_clients: int) -> int:
        """Clients sampled per round out of ``n_clients`` (as Flower's strategies compute it)."""
        return max(int(n_clients * self.fraction_train), self.min_train_nodes)

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    @classmethod
    def from_config(cls, *layers: Mapping[str, Any] | None) -> FederatedSettings:
        """Settings from mappings applied in order (later wins); keys may use ``-`` or ``_``."""
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for layer in layers:
            for key, value in (layer or {}).items():
                name = str(key).replace("-", "_")
                if name not in types:
                    raise ConfigError(f"unknown federated setting {key!r}; known: {sorted(types)}")
                values[name] = _cast(name, types[name], value)
        return cls(**values)

    def to_run_config(self) -> dict[str, Any]:
        """Flower ``run_config`` form: hyphenated keys, scalar values."""
        return {k.replace("_", "-"): v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> FederatedSettings:
        return dataclasses.replace(self, **changes)


def _cast(name: str, type_name: Any, value: Any) -> Any:
    kind = {"int": int, "float": float, "str": str}.get(str(type_name))
    if kind is None or value is None:
        return value
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"federated setting {name!r} expects {type_name}, got {value!r}") from None
