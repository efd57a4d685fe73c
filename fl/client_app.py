"""The Flower ClientApp: trains the session model on one client's own sessions.

* **train**: loads the global weights from the message, runs the shared
  :func:`ranking.trainer.train_epochs` for ``local-epochs`` on the client's sequences (plain SGD
  by default, as in FedAvg / FedOpt; ``client-optimizer=adam`` for AdamW) (with
  FedProx's proximal term when the server asks for it), and replies with the new weights, dense or
  row-sparse (only the embedding rows its data touched, plus the ``sparse-extra-rows`` rows
  that moved most), optionally quantised, plus
  ``num-examples``, the training loss and the bytes it sends.
* **evaluate**: HR@10 / NDCG@10 on the client's own last interaction (leave-one-out).

Which data is "its own": in simulation, ``node_config["partition-id"]`` picks the client's users
from the run's partition; in deployment, ``node_config["data-path"]`` names the node's local
dataset file and the client trains on all of it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl.compression import (
    encode_update,
    largest_change_rows,
    payload_bytes,
    touched_rows_from_sequences,
)
from fl.device_rules import DeviceRules, LocalState, recent_history, today_utc
from fl.local_training import train_locally
from fl.settings import FederatedSettings
from fl.task import (
    EMBEDDING_KEYS,
    State,
    from_array_record,
    get_state,
    reusable_task_network,
    set_state,
    task_content,
    task_data,
    to_array_record,
)
from fl.validation import apply_delta, byzantine, state_delta
from ranking.data import Interactions, leave_one_out, sequence_windows
from ranking.evaluation import evaluate
from ranking.recommender import SequenceRecommender
from ranking.storage import load_dataset

log = logging.getLogger("tandem.fl")


class SimulatedCrash(RuntimeError):
    """Raised by a client chosen to fail this round (``drop-fraction``)."""


def client_interactions(
    settings: FederatedSettings, context: Context
) -> tuple[Interactions, int, int]:
    """The client's own interactions, its partition id and the catalog size."""
    node = context.node_config
    if "data-path" in node:  # deployment: the node's own file
        dataset = load_dataset(str(node["data-path"]), images=False)  # a device needs no images
        return dataset.interactions, int(node.get("partition-id", 0)), dataset.catalog.n_items
    data = task_data(settings)
    pid = int(node["partition-id"])
    if pid >= data.partition.n_clients:
        raise ValueError(
            f"partition-id {pid} but the partition has {data.partition.n_clients} clients"
        )
    return data.partition.client_interactions(data.train, pid), pid, data.dataset.catalog.n_items


def _chosen(seed: int, round_: int, pid: int, fraction: float, salt: int) -> bool:
    """Deterministic per-(round, client) coin flip."""
    if fraction <= 0:
        return False
    return bool(np.random.default_rng([seed, round_, pid, salt]).random() < fraction)


def unavailable(settings: FederatedSettings, round_: int, pid: int) -> str | None:
    """The simulated device is unavailable this round (``availability``, ``availability-pattern``)."""
    p = settings.availability
    if settings.availability_pattern == "diurnal":
        p *= (1 + np.cos(2 * np.pi * round_ / 24)) / 2
    if p >= 1 or not _chosen(settings.seed, round_, pid, 1 - p, salt=3):
        return None
    return f"simulated device unavailable (availability {p:.2f})"


def _is_byzantine(seed: int, pid: int, fraction: float) -> bool:
    """Byzantine clients are fixed for the whole run."""
    return fraction > 0 and bool(np.random.default_rng([seed, pid, 7]).random() < fraction)


ConfigLayer = tuple[tuple[str, Any], ...]
"""A run-config mapping as a sorted, hashable tuple of items."""


def config_layer(config: Mapping[str, Any]) -> ConfigLayer:
    return tuple(sorted(config.items()))


def settings_for(
    base: ConfigLayer, context: Context, message: Message | None = None
) -> FederatedSettings:
    """The settings ``base`` (:func:`config_layer` of a run config), overridden by the run config,
    then by the keys of the server's round config that are settings (strategies add keys of their
    own: server-round, proximal-mu...)."""
    server_config: dict[str, Any] = {}
    if message is not None and "config" in message.content.config_records:
        known = FederatedSettings.round_field_names()
        server_config = {
            k: v for k, v in message.content["config"].items() if k.replace("-", "_") in known
        }
    return _layered_settings(base, config_layer(context.run_config), config_layer(server_config))


@functools.lru_cache(maxsize=64)
def _layered_settings(
    base: ConfigLayer, run_config: ConfigLayer, server_config: ConfigLayer
) -> FederatedSettings:
    """Settings are frozen, so the same layers share one object: parsing them anew cost a
    simulated client about 5% of its round."""
    return FederatedSettings.from_run_config(dict(base), dict(run_config), dict(server_config))


def rows_to_send(
    settings: FederatedSettings, sequences: Any, new_state: State, global_state: State
) -> np.ndarray:
    """Embedding rows of a row-sparse update: the rows the client's data touched, plus the
    ``sparse-extra-rows`` other rows whose local update has the largest norm (the softmax
    push-down of wrongly high-ranked items, which full cross-entropy spreads over every row)."""
    windows, targets = sequence_windows(sequences, settings.max_len)
    touched = touched_rows_from_sequences(windows, targets)
    if not settings.sparse_extra_rows:
        return touched
    (key,) = EMBEDDING_KEYS
    extra = largest_change_rows(
        new_state[key], global_state[key], settings.sparse_extra_rows, touched
    )
    return np.union1d(touched, extra).astype(np.int64)


def make_client_app(base: FederatedSettings | None = None) -> ClientApp:
    """A ClientApp whose defaults are ``base`` (overridden by the run config and the server)."""
    base_layer = config_layer((base or FederatedSettings()).to_run_config())
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        settings = settings_for(base_layer, context, msg)
        round_ = int(msg.content["config"].get("server-round", 0))
        interactions, pid, n_items = client_interactions(settings, context)
        rules = DeviceRules.from_node_config(context.node_config)
        local = LocalState.load(rules.state_dir)
        today = today_utc()
        reason = rules.decline_reason(local, today) or unavailable(settings, round_, pid)
        if reason is not None:  # a normal outcome: the server counts it apart from failures
            local.record(round_, today, declined=True)
            log.info("client %s declines round %d: %s", pid, round_, reason)
            declined = MetricRecord({"declined": 1, "num-examples": 0, "partition-id": pid})
            return Message(RecordDict({"metrics": declined}), reply_to=msg)
        if rules.max_threads is not None:
            torch.set_num_threads(rules.max_threads)
        if rules.max_history is not None:
            interactions = recent_history(interactions, rules.max_history)
        if _chosen(settings.seed, round_, pid, settings.drop_fraction, salt=1):
            raise SimulatedCrash(
                f"client {pid} crashed in round {round_} (drop-fraction={settings.drop_fraction})"
            )
        network = reusable_task_network(settings, n_items)
        global_state: State = from_array_record(msg.content["arrays"])
        sequences = interactions.sequences()
        result = train_locally(
            settings, network, global_state, sequences, round_, pid, max_steps=rules.max_local_steps
        )
        local.record(round_, today, steps=int(result["steps"]))
        new_state = get_state(network)
        attacker = _is_byzantine(settings.seed, pid, settings.byzantine_fraction)
        if attacker and settings.byzantine_mode != "alie":  # ALIE is crafted by the server
            delta = byzantine(
                state_delta(new_state, global_state),
                settings.byzantine_mode,
                settings.byzantine_factor,
            )
            new_state = apply_delta(global_state, delta)
        keys: tuple[str, ...] = ()
        touched = np.empty(0, dtype=np.int64)
        if settings.update_encoding == "row-sparse":
            keys = EMBEDDING_KEYS
            if not settings.freeze_item_table:  # a frozen table: no rows to send
                touched = rows_to_send(settings, sequences, new_state, global_state)
        payload = encode_update(new_state, keys, touched, settings.quantize, global_state)
        metrics = MetricRecord(
            {
                "num-examples": int(result["n_targets"]),
                "train-loss": float(result["loss"]) if result["n_targets"] else 0.0,
                "bytes-up": payload_bytes(payload),
                "partition-id": pid,
                "train-seconds": float(result["seconds"]),
                "byzantine": int(attacker),  # read only by the simulated ALIE attack
            }
        )
        return Message(
            RecordDict({"arrays": to_array_record(payload), "metrics": metrics}), reply_to=msg
        )

    @app.query()
    def identify(msg: Message, context: Context) -> Message:
        """The node's partition id: the server orders nodes by it, so that client sampling and
        aggregation order, and with them a run's results, follow from the seed alone."""
        pid = int(context.node_config.get("partition-id", 0))
        return Message(RecordDict({"metrics": MetricRecord({"partition-id": pid})}), reply_to=msg)

    @app.evaluate()
    def evaluate_handler(msg: Message, context: Context) -> Message:
        settings = settings_for(base_layer, context, msg)
        interactions, _, n_items = client_interactions(settings, context)
        recommender = SequenceRecommender.from_spec(
            settings.model, n_items=n_items, content=task_content(settings, n_items)
        )
        set_state(recommender.network, from_array_record(msg.content["arrays"]))
        split = leave_one_out(interactions)
        n = len(split.test)
        metrics: dict[str, float | int] = {"num-examples": n}
        if n:
            result = evaluate(recommender, split, "test", ks=(10,))
            metrics.update({"hr@10": result["hr@10"], "ndcg@10": result["ndcg@10"]})
        return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)

    return app


app = make_client_app()
"""The ClientApp that ``flwr run .`` and ``flower-supernode`` load (``fl.client_app:app``)."""
