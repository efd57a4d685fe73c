"""SecAgg+ for deployments: Flower's legacy workflow API (``SecAggPlusWorkflow`` + ``secaggplus_mod``).

Secure aggregation exists in Flower 1.42 only in the legacy workflow API, so this module offers a
second app pair that trains the same session model with the same shared ``train_epochs``, but lets the
server see only the (masked, quantised) sum of the client updates, never one client's weights.
Robust strategies, row-sparse or quantised updates, DP and model averaging are not available on
this path (SecAgg+ aggregates dense vectors of one fixed shape): settings that ask for them are
refused (:func:`check_secagg_settings`), not ignored.

``fl.secagg_app:client_app`` / ``fl.secagg_app:server_app`` can replace the default components in
``[tool.flwr.app.components]`` for a deployment; :func:`make_secagg_apps` builds them with settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

from fl.client_app import client_interactions
from fl.local_training import train_locally
from fl.node_sampling import wait_for_nodes
from fl.settings import FederatedSettings
from fl.task import (
    build_task_network,
    evaluate_state,
    get_state,
    task_data,
)
from ranking.errors import ConfigError
from ranking.storage import atomic_write_text


class SessionModelClient(NumPyClient):
    """Trains the session model on the node's own data; weights travel as an ordered list."""

    def __init__(self, settings: FederatedSettings, context: Context) -> None:
        self.settings = settings
        self.interactions, self.pid, n_items = client_interactions(settings, context)
        self.network = build_task_network(settings, n_items)
        self.keys = list(get_state(self.network))

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return list(get_state(self.network).values())

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict]:
        state = dict(zip(self.keys, parameters, strict=True))
        round_ = int(config.get("server-round", 0) or 0)
        result = train_locally(
            self.settings, self.network, state, self.interactions.sequences(), round_, self.pid
        )
        # SecAgg+ weights updates by the example count, bounded by its max_weight: send a unit weight.
        return (
            self.get_parameters({}),
            1,
            {"train-loss": float(result["loss"]) if result["n_targets"] else 0.0},
        )


def check_secagg_settings(settings: FederatedSettings) -> None:
    """Refuse, naming them, the settings that the SecAgg+ path cannot honour."""
    unavailable = [
        (f"fl.dp-noise-multiplier={settings.dp_noise_multiplier}", settings.dp_enabled),
        (
            f"fl.robust-aggregator={settings.robust_aggregator!r}",
            settings.robust_aggregator != "none",
        ),
        (f"fl.update-encoding={settings.update_encoding!r}", settings.update_encoding != "dense"),
        (f"fl.quantize={settings.quantize!r}", settings.quantize != "none"),
        (
            f"fl.model-average-decay={settings.model_average_decay}",
            settings.model_average_decay > 0,
        ),
    ]
    named = [name for name, asked in unavailable if asked]
    if named:
        raise ConfigError(
            f"{', '.join(named)}: not available with SecAgg+ (fl.secagg_app aggregates dense, "
            "unquantised updates with FedAvg and evaluates the last model)"
        )


def make_secagg_apps(
    base: FederatedSettings | None = None,
    *,
    num_shares: float = 0.8,
    reconstruction_threshold: float = 0.6,
) -> tuple[ServerApp, ClientApp]:
    """A (ServerApp, ClientApp) pair training with SecAgg+ (shares and threshold as fractions of clients)."""
    base = base or FederatedSettings()
    check_secagg_settings(base)

    def client_fn(context: Context) -> Any:
        settings = FederatedSettings.from_run_config(base.to_run_config(), dict(context.run_config))
        return SessionModelClient(settings, context).to_client()

    client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        settings = FederatedSettings.from_run_config(base.to_run_config(), dict(context.run_config))
        check_secagg_settings(settings)
        data = task_data(settings)
        initial = get_state(build_task_network(settings, data.dataset.catalog.n_items))
        wait_for_nodes(grid, settings.nodes_to_wait_for, settings.timeout)
        strategy = FedAvg(
            fraction_fit=settings.fraction_train,
            fraction_evaluate=0.0,
            min_fit_clients=settings.min_train_nodes,
            min_available_clients=settings.nodes_to_wait_for,
            initial_parameters=ndarrays_to_parameters(list(initial.values())),
        )
        legacy = LegacyContext(
            context=context, config=ServerConfig(num_rounds=settings.num_rounds), strategy=strategy
        )
        workflow = DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(
                num_shares=num_shares, reconstruction_threshold=reconstruction_threshold
            )
        )
        workflow(grid, legacy)
        final = dict(
            zip(
                initial,
                legacy.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays(),
                strict=True,
            )
        )
        final = {
            k: np.asarray(v, dtype=initial[k].dtype).reshape(initial[k].shape)
            for k, v in final.items()
        }
        before = evaluate_state(settings, initial, data.heldout)
        after = evaluate_state(settings, final, data.heldout)
        run_dir = Path(settings.run_dir or "runs/secagg")
        summary = {
            "rounds": settings.num_rounds,
            "ndcg@10_initial": before["ndcg@10"],
            "ndcg@10": after["ndcg@10"],
            "hr@10": after["hr@10"],
            "changed": any(not np.array_equal(final[k], initial[k]) for k in initial),
        }
        atomic_write_text(run_dir / "secagg_summary.json", json.dumps(summary, indent=2))

    return server_app, client_app


server_app, client_app = make_secagg_apps()
