"""Settings of a federated run: the round settings, the model spec and the strategy spec.

The same object serves every way of running. The Hydra entry point builds it from the ``fl/`` and
``model/`` groups (:meth:`FederatedSettings.create`) and bakes it into the apps; ``flwr run .``
reads ``[tool.flwr.app.config]`` from ``pyproject.toml`` plus ``--run-config``; a deployed
SuperNode adds its own ``node_config`` (``data-path``, ``partition-id``).

Flower's run config is flat (nested TOML tables become dotted keys), so the run-config form is:

* the round settings, hyphenated: ``num-rounds``, ``fraction-train``, ``update-encoding``...;
* the model spec (:class:`ranking.spec.ModelSpec`): ``model.kind``, ``model.train.<key>``,
  ``model.<kind>.<key>``;
* the strategy spec (:class:`fl.strategies.StrategySpec`): ``strategy.name``,
  ``strategy.<name>.<key>``.

Every default is written once, in the dataclasses (this one, ``TrainConfig``, the network
constructors and the strategy settings); ``pyproject.toml`` mirrors them
(:func:`default_run_config`, kept equal by a test), because Flower accepts only overrides of keys
the app declares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fl.robust_aggregation import AGGREGATORS, CLIP_STARTS
from fl.row_sparse_aggregation import ROW_AVERAGES
from fl.strategies import STRATEGIES, StrategySpec
from ranking.errors import ConfigError
from ranking.spec import ModelSpec
from ranking.train_config import check_ranges
from ranking.typed_config import cast_value, check_keys, field_types

PARTITIONS = ("one_user_per_client", "users_per_client", "dirichlet", "by_time")
ENCODINGS = ("dense", "row-sparse")
RUN_CONFIG_KINDS = ("sasrec", "gru4rec", "longshort")
"""Model kinds whose settings tables ``pyproject.toml`` lists (gru/lstm are gru4rec cells)."""
NESTED = ("model", "strategy")
SAMPLINGS = ("auto", "fixed", "poisson")
ACCOUNTANTS = ("pld", "rdp")


@dataclass(frozen=True)
class FederatedSettings:
    """Every setting of a federated run (run-config key = field name with ``-`` for ``_``)."""

    # data: a dataset file written by ranking.storage.save_dataset
    data_path: str = ""
    seed: int = 0
    heldout_fraction: float = 0.1
    partition: str = "one_user_per_client"
    users_per_client: int = 10
    n_clients: int = 10
    dirichlet_alpha: float = 0.5
    # the session model: one spec {kind, model, train}
    model: ModelSpec = field(default_factory=ModelSpec)
    # rounds and local training
    num_rounds: int = 80
    fraction_train: float = 0.1
    min_train_nodes: int = 2
    # before round 1 the server waits until this many nodes are connected (0: min-train-nodes;
    # a simulation sets its number of SuperNodes), so that round 1 samples from every node and
    # the node order holds every partition
    min_available_nodes: int = 0
    # fixed-size sampling: sample this many times the round's target and aggregate the first
    # target valid replies in node order (over-selection for dropouts, Bonawitz et al. 2019)
    over_selection: float = 1.0
    local_epochs: int = 1
    # windows per local step (0: the model spec's batch size); smaller batches give clients with
    # longer histories more local steps
    local_batch_size: int = 0
    client_optimizer: str = "sgd"
    lr: float = 1.0
    timeout: float = 600.0
    # the strategy: one spec {name, **settings}
    strategy: StrategySpec = field(default_factory=StrategySpec)
    # client sampling: "fixed" (fraction-train of the nodes, at least min-train-nodes), "poisson"
    # (each node independently with probability fraction-train), "auto" (poisson under DP)
    client_sampling: str = "auto"
    # nodes are ordered by partition id, asked once at the start with one query message per node,
    # so that a run follows from its seed; false skips the query (one message per node: 18,000 in
    # the 20,000-user world) and orders nodes by Flower's node ids, which are random, so sampling
    # and aggregation order then differ from run to run
    order_nodes_by_partition: bool = True
    # central differential privacy (fl.private_aggregation): server-side clipping of each update,
    # uniform sum + Gaussian noise, then the server optimiser (0 = off)
    dp_noise_multiplier: float = 0.0
    dp_clipping_norm: float = 1.0
    dp_delta: float = 1e-6
    # how epsilon is accounted (fl.private_aggregation.dp_epsilon): "pld" (privacy loss
    # distributions, tight) or "rdp" (Renyi DP, an upper bound that is looser)
    dp_accountant: str = "pld"
    # server-side exponential moving average of the global model over the rounds, evaluated and
    # saved instead of the last model (fl.model_average; 0 = off; post-processing under DP)
    model_average_decay: float = 0.0
    # robust aggregation before the server optimiser (fl.robust_aggregation)
    robust_aggregator: str = "none"
    robust_trim: float = 0.1  # trimmed-mean: fraction cut at each end
    robust_byzantine: int = 1  # krum/multikrum: assumed Byzantine clients f
    robust_select: int = 0  # multikrum: updates averaged (0 = n - f)
    robust_clip_radius: float = 0.0  # centered-clip: radius tau (0 = median update norm)
    robust_clip_iterations: int = 3
    robust_clip_start: str = "median"  # centered-clip: median | sparse-zero (fl.robust_aggregation)
    robust_norm_ratio: float = 2.0  # norm-filter: drop updates longer than this x the median norm
    # communication
    update_encoding: str = "dense"
    sparse_extra_rows: int = (
        200  # row-sparse: also send the rows that moved most (softmax negatives)
    )
    # row-sparse: each embedding row averaged over the clients that sent it ("senders"), or the
    # senders' changes over every client's weight, as a dense average with zero for unsent rows
    sparse_row_average: str = "senders"
    quantize: str = "none"
    # faults and attacks (simulation only)
    drop_fraction: float = 0.0
    byzantine_fraction: float = 0.0
    byzantine_mode: str = "signflip"
    byzantine_factor: float = 1.0
    # simulated device availability: the chance that a sampled device takes part in a round
    # (constant, or diurnal: times (1 + cos(2 pi round / 24)) / 2, a day of 24 rounds)
    availability: float = 1.0
    availability_pattern: str = "constant"
    # outputs
    run_dir: str = ""
    eval_every: int = 1
    # warm start: a checkpoint directory (ranking.checkpoint) whose weights are round 0's model
    init_checkpoint: str = ""
    # round 0's item table from public content vectors (a .npy [n_items, C], e.g. CLIP's), by PCA
    # to the table's width (fl.item_table); "" = random
    item_table_init: str = ""
    # the model's frozen content input (a .npy [n_items, C], e.g. CLIP's): every item vector is its
    # ID row plus a learned projection of its content vector; every process reads the file
    content_vectors: str = ""
    # clients train all but the item table and the server keeps it fixed (under DP it is then out
    # of the private release)
    freeze_item_table: bool = False
    # after the last round, export the best model for on-device inference (<run-dir>/device_model)
    export_device_model: bool = False

    def __post_init__(self) -> None:
        check_ranges(
            "fl",
            [
                ("partition", self.partition in PARTITIONS, f"one of {PARTITIONS}"),
                ("heldout_fraction", 0 < self.heldout_fraction < 1, "(0, 1)"),
                ("users_per_client", self.users_per_client >= 1, ">= 1"),
                ("n_clients", self.n_clients >= 1, ">= 1"),
                ("dirichlet_alpha", self.dirichlet_alpha > 0, "> 0"),
                (
                    "num_rounds",
                    self.num_rounds >= 1,
                    ">= 1 (0 rounds would report an untrained model)",
                ),
                ("fraction_train", 0 < self.fraction_train <= 1, "(0, 1]"),
                ("min_train_nodes", self.min_train_nodes >= 1, ">= 1"),
                (
                    "min_available_nodes",
                    self.min_available_nodes >= 0,
                    ">= 0 (0: min-train-nodes)",
                ),
                ("over_selection", self.over_selection >= 1, ">= 1"),
                ("local_epochs", self.local_epochs >= 1, ">= 1"),
                (
                    "local_batch_size",
                    self.local_batch_size >= 0,
                    ">= 0 (0: the model's batch size)",
                ),
                ("client_optimizer", self.client_optimizer in ("sgd", "adam"), "sgd or adam"),
                ("lr", self.lr > 0, "> 0"),
                ("timeout", self.timeout > 0, "> 0"),
                ("dp_noise_multiplier", self.dp_noise_multiplier >= 0, ">= 0"),
                ("dp_clipping_norm", self.dp_clipping_norm > 0, "> 0"),
                ("dp_delta", 0 < self.dp_delta < 1, "(0, 1)"),
                ("dp_accountant", self.dp_accountant in ACCOUNTANTS, f"one of {ACCOUNTANTS}"),
                ("model_average_decay", 0 <= self.model_average_decay < 1, "in [0, 1)"),
                (
                    "client_sampling",
                    self.client_sampling in SAMPLINGS,
                    f"one of {SAMPLINGS}",
                ),
                (
                    "robust_aggregator",
                    self.robust_aggregator in AGGREGATORS,
                    f"one of {AGGREGATORS}",
                ),
                ("robust_trim", 0 <= self.robust_trim < 0.5, "[0, 0.5)"),
                ("robust_byzantine", self.robust_byzantine >= 0, ">= 0"),
                ("robust_select", self.robust_select >= 0, ">= 0"),
                ("robust_clip_radius", self.robust_clip_radius >= 0, ">= 0"),
                ("robust_clip_iterations", self.robust_clip_iterations >= 1, ">= 1"),
                ("robust_norm_ratio", self.robust_norm_ratio >= 1, ">= 1"),
                (
                    "robust_clip_start",
                    self.robust_clip_start in CLIP_STARTS,
                    f"one of {CLIP_STARTS}",
                ),
                ("update_encoding", self.update_encoding in ENCODINGS, f"one of {ENCODINGS}"),
                ("sparse_extra_rows", self.sparse_extra_rows >= 0, ">= 0"),
                (
                    "sparse_row_average",
                    self.sparse_row_average in ROW_AVERAGES,
                    f"one of {ROW_AVERAGES}",
                ),
                ("quantize", self.quantize in ("none", "fp16", "int8"), "none, fp16 or int8"),
                ("drop_fraction", 0 <= self.drop_fraction < 1, "[0, 1)"),
                ("byzantine_fraction", 0 <= self.byzantine_fraction < 1, "[0, 1)"),
                (
                    "byzantine_mode",
                    self.byzantine_mode in ("scale", "signflip", "alie"),
                    "scale, signflip or alie",
                ),
                ("eval_every", self.eval_every >= 1, ">= 1"),
                ("availability", 0 < self.availability <= 1, "(0, 1]"),
                (
                    "availability_pattern",
                    self.availability_pattern in ("constant", "diurnal"),
                    "constant or diurnal",
                ),
            ],
            self,
        )
        if self.update_encoding == "row-sparse" and not self.strategy.row_sparse:
            raise ConfigError(
                f"fl.update_encoding=row-sparse: row-sparse updates are averaged per row before the "
                f"server optimizer, which fl.strategy.name={self.strategy.name!r} cannot take; use one of "
                f"{sorted(n for n, e in STRATEGIES.items() if e.row_sparse)} (for robustness with "
                f"row-sparse updates use fl.robust_aggregator)"
            )
        server_side = [
            name
            for name, on in (
                ("fl.dp_noise_multiplier > 0", self.dp_enabled),
                (
                    f"fl.robust_aggregator={self.robust_aggregator}",
                    self.robust_aggregator != "none",
                ),
            )
            if on
        ]
        if server_side and not self.strategy.row_sparse:
            raise ConfigError(
                f"{server_side[0]} aggregates the updates itself and hands the result to a server "
                f"optimiser; fl.strategy.name={self.strategy.name!r} aggregates on its own: use one "
                f"of {sorted(n for n, e in STRATEGIES.items() if e.row_sparse)}"
            )
        if len(server_side) > 1:
            raise ConfigError(
                "fl.dp_noise_multiplier > 0 and fl.robust_aggregator cannot be combined: the DP "
                "guarantee is for the clipped uniform mean (set fl.robust_aggregator=none)"
            )
        if self.over_selection > 1 and self.poisson_sampling:
            raise ConfigError(
                f"fl.over_selection={self.over_selection} with Poisson sampling: each node is "
                "sampled at rate fl.fraction_train, which the privacy accounting uses; "
                "over-selection applies to fixed-size sampling (fl.client_sampling=fixed)"
            )
        if self.item_table_init and self.init_checkpoint:
            raise ConfigError(
                "fl.item_table_init and fl.init_checkpoint both set round 0's item table: set one"
            )
        if self.dp_enabled and self.client_sampling == "fixed":
            raise ConfigError(
                "fl.dp_noise_multiplier > 0 with fl.client_sampling=fixed: the privacy accounting "
                "assumes Poisson sampling (set fl.client_sampling=poisson or auto)"
            )

    @property
    def dp_enabled(self) -> bool:
        return self.dp_noise_multiplier > 0

    @property
    def poisson_sampling(self) -> bool:
        """Whether each node is sampled independently (``poisson``, or ``auto`` under DP)."""
        return self.client_sampling == "poisson" or (
            self.client_sampling == "auto" and self.dp_enabled
        )

    @property
    def max_len(self) -> int:
        return self.model.train.max_len

    def sample_size(self, n_clients: int) -> int:
        """The round's target: clients whose updates a round aggregates, out of ``n_clients`` (as
        Flower's strategies compute a sample size). With ``over_selection`` more are sampled."""
        return max(int(n_clients * self.fraction_train), self.min_train_nodes)

    @property
    def nodes_to_wait_for(self) -> int:
        """Nodes the server waits for before round 1 (``min-available-nodes``, at least
        ``min-train-nodes``)."""
        return max(self.min_available_nodes, self.min_train_nodes)

    @property
    def sampled_fraction(self) -> float:
        """The fraction of nodes a fixed-size round samples: the target's, over-selected."""
        return min(1.0, self.fraction_train * self.over_selection)

    @classmethod
    def round_field_names(cls) -> frozenset[str]:
        """The flat settings (everything but the model and strategy specs)."""
        return frozenset(f.name for f in dataclasses.fields(cls) if f.name not in NESTED)

    @classmethod
    def create(
        cls,
        *,
        model: Mapping[str, Any] | ModelSpec | None = None,
        strategy: Mapping[str, Any] | StrategySpec | None = None,
        **flat: Any,
    ) -> FederatedSettings:
        """From the nested specs and flat round settings (Hydra's ``fl/`` and ``model/`` groups)."""
        types = field_types(cls)
        flat = {str(k).replace("-", "_"): v for k, v in flat.items()}
        check_keys(flat, cls.round_field_names(), "fl")
        values = {k: cast_value(v, types[k], f"fl.{k}") for k, v in flat.items()}
        return cls(
            model=ModelSpec.from_mapping(model) if model is not None else ModelSpec(),
            strategy=StrategySpec.from_mapping(strategy)
            if strategy is not None
            else StrategySpec(),
            **values,
        )

    @classmethod
    def from_run_config(cls, *layers: Mapping[str, Any] | None) -> FederatedSettings:
        """Settings from flat run-config mappings applied in order (later wins).

        An unknown key raises :class:`ConfigError` naming it.
        """
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update({str(k): v for k, v in (layer or {}).items()})
        flat = {k: v for k, v in merged.items() if k.split(".", 1)[0] not in NESTED}
        for key in merged:
            if key in NESTED:
                raise ConfigError(f"run-config key {key!r} needs a sub-key ({key}.<...>)")
        return cls.create(
            model=ModelSpec.from_run_config(merged),
            strategy=StrategySpec.from_run_config(merged),
            **flat,
        )

    def to_run_config(self) -> dict[str, Any]:
        """Flower ``run_config`` form: flat dotted keys with hyphens, scalar values."""
        out = {
            f.name.replace("_", "-"): getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in NESTED
        }
        return {**out, **self.model.to_run_config(), **self.strategy.to_run_config()}

    def replace(self, **changes: Any) -> FederatedSettings:
        return dataclasses.replace(self, **changes)


def default_run_config() -> dict[str, Any]:
    """Every run-config key with its default: what ``[tool.flwr.app.config]`` must declare."""
    base = FederatedSettings().to_run_config()
    base.update(ModelSpec.default_run_config(RUN_CONFIG_KINDS))
    base.update(StrategySpec.default_run_config())
    return base
