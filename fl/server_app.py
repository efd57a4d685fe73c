"""The Flower ServerApp: rounds of federated training of the session model.

Each round the server samples clients (:mod:`fl.node_sampling`: nodes in partition order, a
fixed-size sample seeded by (seed, round), or Poisson sampling) and sends them the global weights;
the replies are checked (:func:`fl.validation.check_update`: NaN/Inf, wrong keys or shapes are
rejected and logged, never aggregated), crashed or timed-out clients are dropped for the round
(a device that declines, ``fl.device_rules``, is counted as ``declined``, not as a failure), and
the valid replies are aggregated in partition order (:mod:`fl.round_aggregation`) when at least
``min-train-nodes`` arrived (under DP every round releases a noised model):

* dense updates by the strategy itself (FedAvg, FedProx, FedAdam, FedYogi, FedAvgM, Krum,
  MultiKrum, FedTrimmedAvg, FedMedian);
* row-sparse updates, robust rules (``robust-aggregator``) or the DP mechanism by tandem, after
  which the strategy applies its server optimizer (FedAdam, FedYogi, FedAvgM) to that aggregate.

After every round the server evaluates the global model on held-out users (HR@10, NDCG@10, full
ranking), appends the round's metrics as one JSON line to ``<run-dir>/rounds.jsonl`` and writes a
checkpoint (atomically). Started again with the same ``run-dir``, it resumes after the last
completed round. The model of the round with the best validation NDCG@10 is kept as
``best_model.pt`` (model selection as in central early stopping; the test target is never used
to choose).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from tqdm import tqdm

from fl.compression import decode_update
from fl.item_table import with_content_item_table
from fl.model_average import AVERAGE_PREFIX, averaged
from fl.node_sampling import OrderedGrid, configure_round, node_partitions, wait_for_nodes
from fl.private_aggregation import dp_epsilon
from fl.round_aggregation import aggregate_round
from fl.settings import FederatedSettings
from fl.strategies import make_strategy
from fl.task import (
    State,
    build_task_network,
    from_array_record,
    get_state,
    record_nbytes,
    state_scorer,
    task_content,
    task_data,
    to_array_record,
)
from fl.validation import RejectedUpdate
from ranking.checkpoint import load_checkpoint, save_checkpoint
from ranking.errors import ConfigError
from ranking.evaluation import evaluate
from ranking.storage import atomic_path, atomic_write_text

log = logging.getLogger("tandem.fl")

CHECKPOINT = "checkpoint.npz"
ROUNDS = "rounds.jsonl"
BEST_MODEL = "best_model"
FINAL_MODEL = "final_model"
"""Checkpoint directories (:mod:`ranking.checkpoint`): the best-validation and the last round."""
DEVICE_MODEL = "device_model"
"""With ``export-device-model``: the best model for devices (:mod:`fl.device_export`)."""


def load_round_state(run_dir: Path) -> tuple[int, State] | None:
    """``(last completed round, global state)`` from ``run_dir``, or ``None``."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as npz:
        round_ = int(npz["__round__"])
        state = {
            k: npz[k] for k in npz.files if k != "__round__" and not k.startswith(AVERAGE_PREFIX)
        }
    return round_, state


def load_round_average(run_dir: Path) -> State | None:
    """The model average saved with the last round's checkpoint, or ``None`` (none kept)."""
    with np.load(run_dir / CHECKPOINT, allow_pickle=False) as npz:
        average = {
            k.removeprefix(AVERAGE_PREFIX): npz[k]
            for k in npz.files
            if k.startswith(AVERAGE_PREFIX)
        }
    return average or None


def warm_start_state(path: Path, fresh: State) -> State:
    """The weights of the checkpoint at ``path`` (a live model to fine-tune), checked against the
    freshly built network's keys and shapes."""
    checkpoint = load_checkpoint(path)
    state = {k: v.numpy() for k, v in checkpoint.state_dict.items()}
    if set(state) != set(fresh) or any(state[k].shape != fresh[k].shape for k in fresh):
        raise ConfigError(
            f"init-checkpoint {path} does not fit the configured model: keys or shapes differ "
            f"(e.g. another model spec or catalog size)"
        )
    return {k: state[k].astype(fresh[k].dtype) for k in fresh}


def save_round_state(
    run_dir: Path, round_: int, state: State, average: State | None = None
) -> None:
    """The round's global model (and the model average, when kept) in one atomic file."""
    kept = {f"{AVERAGE_PREFIX}{k}": v for k, v in (average or {}).items()}
    with atomic_path(run_dir / CHECKPOINT) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, __round__=np.array(round_), **state, **kept)


def save_model(
    path: Path, state: State, settings: FederatedSettings, round_: int, n_items: int
) -> None:
    """The global model as a checkpoint in the one format (read by ``load_recommender``)."""
    meta = {"round": round_, "run_config": settings.to_run_config()}
    content = task_content(settings, n_items)
    save_checkpoint(path, settings.model, state, n_items, content=content, meta=meta)


def evaluate_round(settings: FederatedSettings, state: State, heldout: Any) -> dict[str, float]:
    """Test HR@10 / NDCG@10 and validation NDCG@10 of the global model on the held-out users."""
    scorer = state_scorer(settings, state)
    test = evaluate(scorer, heldout, "test", ks=(10,))
    valid = evaluate(scorer, heldout, "valid", ks=(10,))
    return {"hr@10": test["hr@10"], "ndcg@10": test["ndcg@10"], "val_ndcg@10": valid["ndcg@10"]}


def round_summary(row: dict[str, Any]) -> str:
    """One round as a short line: accepted updates, loss, test and validation NDCG@10, seconds."""
    parts = [f"accepted {row['accepted']}/{row['sampled']}"]
    if row.get("train_loss") is not None:
        parts.append(f"loss {row['train_loss']:.4f}")
    if "ndcg@10" in row:
        parts.append(f"ndcg@10 {row['ndcg@10']:.4f} val {row['val_ndcg@10']:.4f}")
    if "epsilon" in row:
        parts.append(f"eps {row['epsilon']:.2f}")
    return "  ".join(parts)


def best_round(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The evaluated round with the highest validation NDCG@10 (earliest on ties)."""
    scored = [r for r in rows if "val_ndcg@10" in r]
    return max(scored, key=lambda r: (r["val_ndcg@10"], -r["round"])) if scored else None


def read_rounds(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / ROUNDS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _decode_replies(
    replies: list[Message], global_state: State, settings: FederatedSettings
) -> tuple[list[tuple[Message, Any, float]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Split replies into accepted ``(message, decoded update, weight)``, dropped and rejected."""
    accepted, dropped, rejected = [], [], []
    for reply in replies:
        node = reply.metadata.src_node_id
        if reply.has_error():
            dropped.append({"node": node, "reason": reply.error.reason[:200]})
            continue
        metrics = reply.content.metric_records.get("metrics")
        if metrics is not None and metrics.get("declined"):  # the device sat this round out
            dropped.append({"node": node, "reason": "declined", "declined": True})
            continue
        try:
            payload = from_array_record(reply.content["arrays"])
            decoded = decode_update(payload, global_state)
            metrics = reply.content["metrics"]
            weight = float(metrics["num-examples"])
            if not np.isfinite(weight) or weight < 0:
                raise RejectedUpdate(f"must be a finite count, got {weight}", key="num-examples")
        except RejectedUpdate as exc:
            rejected.append({"node": node, "reason": str(exc)})
            log.warning("round update from node %s rejected: %s", node, exc)
            continue
        accepted.append((reply, decoded, weight))
    return accepted, dropped, rejected


def run_rounds(grid: Grid, settings: FederatedSettings) -> list[dict[str, Any]]:
    """Run (or resume) the federated rounds; returns every round's metrics row."""
    run_dir = Path(settings.run_dir or "runs/federated")
    run_dir.mkdir(parents=True, exist_ok=True)
    data = task_data(settings)
    n_items = data.dataset.catalog.n_items
    atomic_write_text(run_dir / "partition.json", json.dumps(data.partition.to_table()))
    state = get_state(build_task_network(settings, n_items))
    if settings.init_checkpoint:
        state = warm_start_state(Path(settings.init_checkpoint), state)
    if settings.item_table_init:
        state = with_content_item_table(state, Path(settings.item_table_init))
    start = 0
    resumed = load_round_state(run_dir)
    rows = read_rounds(run_dir)
    if resumed is not None:
        start, state = resumed
        rows = [r for r in rows if r["round"] <= start]
        log.info("resuming %s after round %d", run_dir, start)
        average = load_round_average(run_dir) if settings.model_average_decay else None
        if settings.model_average_decay and average is None:
            raise ConfigError(
                f"fl.model_average_decay={settings.model_average_decay}: the checkpoint in "
                f"{run_dir} was saved without a model average, so the run cannot resume with one"
            )
    else:
        rows = []
        rows.append({"round": 0, **evaluate_round(settings, state, data.heldout)})
        save_model(run_dir / BEST_MODEL, state, settings, 0, n_items)
        average = state if settings.model_average_decay else None
    atomic_write_text(run_dir / ROUNDS, "".join(json.dumps(r) + "\n" for r in rows))

    strategy = make_strategy(settings, data.partition.n_clients)
    wait_for_nodes(grid, settings.nodes_to_wait_for, settings.timeout)
    partitions = (
        node_partitions(grid, settings.timeout) if settings.order_nodes_by_partition else {}
    )
    ordered = OrderedGrid(grid, partitions)
    dense_bytes = int(sum(v.nbytes for v in state.values()))
    progress = tqdm(
        total=settings.num_rounds,
        initial=start,
        desc="federated rounds",
        unit="round",
        mininterval=2.0,
        leave=False,
    )
    for round_ in range(start + 1, settings.num_rounds + 1):
        t0 = time.perf_counter()
        config = ConfigRecord({"lr": settings.lr, "local-epochs": settings.local_epochs})
        messages, template = configure_round(
            strategy, settings, round_, to_array_record(state), config, ordered
        )
        t_send = time.perf_counter()
        replies = list(grid.send_and_receive(messages, timeout=settings.timeout))
        round_trip = time.perf_counter() - t_send
        replies.sort(key=lambda r: ordered.rank(r.metadata.src_node_id))  # a fixed sum order
        accepted, dropped, rejected = _decode_replies(replies, state, settings)
        surplus = 0
        if settings.over_selection > 1:  # the first target valid replies, in node order
            target = settings.sample_size(len(ordered.get_node_ids()))  # as Flower counts
            surplus = max(0, len(accepted) - target)
            accepted = accepted[:target]
        # Under DP every round releases a (noised) model; otherwise a round needs enough replies.
        aggregated = settings.dp_enabled or len(accepted) >= settings.min_train_nodes
        if aggregated:
            n_clients = data.partition.n_clients
            new_state = aggregate_round(
                strategy, settings, state, accepted, round_, n_clients, template
            )
            if new_state is None:
                aggregated = False
                log.warning("round %d: the strategy released no aggregate", round_)
            else:
                state = new_state
                if average is not None:
                    average = averaged(average, state, settings.model_average_decay)
        elif messages:
            log.warning(
                "round %d: only %d valid replies (< %d): global model unchanged",
                round_,
                len(accepted),
                settings.min_train_nodes,
            )
        losses = [(float(r.content["metrics"]["train-loss"]), w) for r, _, w in accepted]
        row: dict[str, Any] = {
            "round": round_,
            "sampled": len(messages),
            "accepted": len(accepted),
            "surplus": surplus,  # valid replies beyond the target (over-selection), not used
            "dropped": sum(not d.get("declined") for d in dropped),
            "declined": sum(bool(d.get("declined")) for d in dropped),
            "rejected": len(rejected),
            "aggregated": aggregated,
            "train_loss": (
                sum(loss * w for loss, w in losses) / max(1e-9, sum(w for _, w in losses))
            )
            if losses
            else None,
            "bytes_down": dense_bytes * len(messages),
            "bytes_up": sum(record_nbytes(r.content["arrays"]) for r, _, _ in accepted),
            "rejections": rejected,
            "round_trip_seconds": round_trip,  # sending the model to every reply received
            "train_seconds": max(  # the slowest client's local training
                (float(r.content["metrics"].get("train-seconds", 0.0)) for r, _, _ in accepted),
                default=0.0,
            ),
        }
        if aggregated and hasattr(strategy, "eta"):  # the server step this round took
            row["eta"] = float(strategy.eta)
        if settings.dp_enabled:  # every round is one Poisson-subsampled Gaussian release
            row.update(
                epsilon=dp_epsilon(
                    settings.fraction_train,
                    settings.dp_noise_multiplier,
                    round_,
                    settings.dp_delta,
                    settings.dp_accountant,
                ),
                delta=settings.dp_delta,
                dp_accountant=settings.dp_accountant,
                dp_release=True,
                dp_releases=round_,
            )
        served = state if average is None else average  # what is evaluated and saved
        if round_ % settings.eval_every == 0 or round_ == settings.num_rounds:
            best_before = best_round(rows)
            row.update(evaluate_round(settings, served, data.heldout))
            if best_before is None or row["val_ndcg@10"] > best_before["val_ndcg@10"]:
                save_model(run_dir / BEST_MODEL, served, settings, round_, n_items)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        save_round_state(run_dir, round_, state, average)
        atomic_write_text(run_dir / ROUNDS, "".join(json.dumps(r) + "\n" for r in rows))
        log.debug("round %d: %s", round_, {k: v for k, v in row.items() if k != "rejections"})
        progress.update(1)
        progress.set_postfix_str(round_summary(row), refresh=False)
    progress.close()
    best = best_round(rows)
    if best is not None:
        log.info(
            "federated: %d rounds; best validation NDCG@10 %.4f at round %d",
            settings.num_rounds,
            best["val_ndcg@10"],
            best["round"],
        )
    final = state if average is None else average
    save_model(run_dir / FINAL_MODEL, final, settings, settings.num_rounds, n_items)
    if settings.export_device_model:  # ONNX fp32 + int8 with a manifest, copied to devices as files
        from fl.device_export import export_device_model

        path = export_device_model(
            run_dir / BEST_MODEL, data.dataset.catalog.ids, run_dir / DEVICE_MODEL
        )
        log.info("device model for on-device inference: %s", path)
    return rows


def make_server_app(base: FederatedSettings | None = None) -> ServerApp:
    """A ServerApp whose defaults are ``base`` (overridden by the run config)."""
    base = base or FederatedSettings()
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        settings = FederatedSettings.from_run_config(base.to_run_config(), dict(context.run_config))
        rows = run_rounds(grid, settings)
        final = rows[-1]
        context.state["summary"] = MetricRecord(
            {
                k: float(v)
                for k, v in final.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
        )

    return app


app = make_server_app()
"""The ServerApp that ``flwr run .`` and a deployed SuperLink load (``fl.server_app:app``)."""
