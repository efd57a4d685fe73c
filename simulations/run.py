"""The Hydra entry point of every tandem run (``tandem-simulate`` / ``python -m simulations.run``).

One run: read the dataset (through the cache), split it, fit the configured model and the
reference model, evaluate both with the one evaluator, print a table and write ``metrics.json``
into the run directory.

Examples
--------
``tandem-simulate``                                   the whole chain on the synthetic world
                                                      (mode=pipeline, simulations/pipeline.py)
``tandem-simulate mode=central encoder=none dataset=ml100k model=pop``   one central model
``tandem-simulate -m mode=central encoder=none seed=0,1 model=pop,itemknn``   a 2x2 sweep
``tandem-simulate mode=central model=gru4rec model@reference=sasrec``   any model as the reference

Every run returns its objective (``objective.metric`` of the run's main result row) to Hydra, so
that a sweeper can optimise it.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ranking.data import Dataset, Split, leave_one_out, temporal_split
from ranking.errors import ConfigError, TandemError
from ranking.evaluation import evaluate
from ranking.storage import atomic_write_text
from simulations.console import route_third_party_logs
from simulations.content import content_vectors
from simulations.datasets.loader import load_with_path
from simulations.report import print_table
from simulations.tracking import Tracker, epoch_callback, hydra_identity

log = logging.getLogger("tandem")


def make_split(dataset: Dataset, cfg: DictConfig) -> Split:
    """The split named by ``cfg.split.kind``."""
    kind = cfg.kind
    if kind == "leave_one_out":
        return leave_one_out(dataset.interactions, min_len=int(cfg.get("min_len", 3)))
    if kind == "temporal":
        return temporal_split(
            dataset.interactions,
            valid_fraction=float(cfg.valid_fraction),
            test_fraction=float(cfg.test_fraction),
        )
    raise ConfigError(f"split.kind={kind!r} is not known; expected 'leave_one_out' or 'temporal'")


def build_model(model_cfg: DictConfig, name: str, content: np.ndarray | None = None) -> Any:
    """Instantiate a model config (``_target_`` + settings) with a clear error on failure.

    Content vectors (from the ``encoder/`` group) go to the models that take them.
    """
    from hydra.utils import instantiate

    try:
        if content is not None and "kind" in model_cfg:  # the neural sequence models
            return instantiate(model_cfg, content=content)
        return instantiate(model_cfg)
    except Exception as exc:  # hydra wraps import and argument errors in its own types
        raise ConfigError(
            f"model {name!r} cannot be built from {OmegaConf.to_container(model_cfg)}: {exc}"
        ) from exc


def fit_model(model: Any, split: Split) -> Any:
    """Fit on the training split; models that early-stop also get the split for validation."""
    parameters = inspect.signature(model.fit).parameters
    if "validation" in parameters:
        extra = {}
        if "callback" in parameters:  # per-epoch losses to W&B, when a tracker is open
            extra["callback"] = epoch_callback(f"l2/{getattr(model, 'kind', type(model).__name__)}")
        return model.fit(split.train, validation=split, **extra)
    return model.fit(split.train)


def evaluate_model(model: Any, split: Split, cfg: DictConfig) -> dict[str, float]:
    ev = cfg.eval
    return evaluate(
        model,
        split,
        stage=str(ev.stage),
        ks=tuple(int(k) for k in ev.ks),
        filter_seen=bool(ev.filter_seen),
        protocol=str(ev.protocol),
        n_negatives=int(ev.n_negatives),
        negative_sampling=str(ev.negative_sampling),
        seed=int(cfg.seed),
    )


def model_choice(cfg: DictConfig) -> str:
    """The name of the chosen model: its config group option, else its class name."""
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get("model"))
    if "kind" in cfg.model:
        return str(cfg.model.kind)
    return str(cfg.model.get("_target_", "model")).rsplit(".", 1)[-1]


def reference_choice(cfg: DictConfig) -> str | None:
    """The name of the reference model (the ``model@reference`` defaults entry), or ``None``."""
    if "reference" not in cfg or cfg.reference is None:
        return None
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("model@reference")
        if choice:
            return str(choice)
    if "kind" in cfg.reference:
        return str(cfg.reference.kind)
    return str(cfg.reference.get("_target_", "reference")).rsplit(".", 1)[-1]


def objective_value(cfg: DictConfig, rows: list[dict[str, Any]]) -> float:
    """The sweep objective: ``objective.metric`` of the run's main row -- the configured model
    (central), the last round (federated), the two-tier system (pipeline)."""
    metric = str(cfg.objective.metric)
    trained = [r for r in rows if r.get("round") != "central"]
    if cfg.mode in ("central", "stream"):
        main = rows[0]
    elif cfg.mode == "federated":
        main = trained[-1]
    elif cfg.objective.get("reranker"):
        name = str(cfg.objective.reranker)
        main = next((r for r in rows if r.get("reranker") == name), {})
        if not main:
            raise ConfigError(
                f"objective.reranker={name!r} is not among the compared re-rankers (rerankers.*)"
            )
    else:
        main = next((r for r in rows if str(r.get("system", "")).startswith("two-tier")), rows[-1])
    weight = float(cfg.objective.get("diversity_weight") or 0.0)
    for key in (metric, "ild@10") if weight else (metric,):
        if key not in main:
            known = sorted(
                k for k, v in main.items() if isinstance(v, int | float) and not isinstance(v, bool)
            )
            raise ConfigError(
                f"objective needs {key!r}, which is not a result of this row; known: {known}"
            )
    return float(main[metric]) + (weight * float(main["ild@10"]) if weight else 0.0)


def table_columns(ks: list[int]) -> list[str]:
    """The columns a run prints: accuracy at every K, beyond-accuracy at the first K."""
    first = ks[0]
    accuracy = [f"{m}@{k}" for k in ks for m in ("hr", "ndcg", "mrr")]
    beyond = [f"coverage@{first}", f"novelty@{first}", f"avg_pop@{first}"]
    return ["dataset", "model", *accuracy, *beyond, "n_users", "fit_seconds"]


def check_run_config(cfg: DictConfig) -> None:
    """Refuse a bad mode or federated setting (naming it) before anything is loaded or written:
    the data, the run directory's files and the W&B run come after this check."""
    if cfg.mode not in ("central", "federated", "pipeline", "stream"):
        raise ConfigError(
            f"mode={cfg.mode!r} is not known; expected 'pipeline', 'central', 'federated' or 'stream'"
        )
    if cfg.mode in ("federated", "pipeline"):
        from simulations.federated import federated_settings

        # the same settings the run builds later, with its paths not known yet
        federated_settings(cfg, Path(""), Path(""))


def run(cfg: DictConfig, output_dir: Path | None = None) -> list[dict[str, Any]]:
    """Run one configured experiment; returns the result rows (one per model)."""
    np.random.seed(int(cfg.seed))
    check_run_config(cfg)
    t0 = time.perf_counter()
    dataset, data_path = load_with_path(
        OmegaConf.to_container(cfg.dataset, resolve=True),
        cache_dir=cfg.paths.cache_dir,
        filters=OmegaConf.to_container(cfg.filters, resolve=True),
    )
    load_s = time.perf_counter() - t0
    if cfg.mode == "federated":
        return run_federated_mode(cfg, dataset, data_path, output_dir)
    if cfg.mode == "pipeline":
        from simulations.pipeline import run_pipeline

        return run_pipeline(cfg, dataset, data_path, output_dir)
    if cfg.mode == "stream":
        from simulations.streaming import run_stream

        return run_stream(cfg, dataset, data_path, output_dir)
    split = make_split(dataset, cfg.split)
    summary = dataset.summary()
    log.info("dataset %s: %s (%.2fs)", dataset.name, summary, load_s)

    model_name = model_choice(cfg)
    models = [(model_name, cfg.model)]
    reference_name = reference_choice(cfg)
    if reference_name is not None and reference_name != model_name:
        models.append((reference_name, cfg.reference))
    for name, model_cfg in models:
        if "kind" in model_cfg and int(model_cfg.train.epochs) < 1:
            raise ConfigError(
                f"train.epochs={model_cfg.train.epochs}: model {name!r} would be reported untrained; "
                f"set train.epochs >= 1"
            )

    content = content_vectors(
        OmegaConf.to_container(cfg.encoder, resolve=True), dataset.catalog, cfg.paths.cache_dir
    )
    rows: list[dict[str, Any]] = []
    for name, model_cfg in models:
        t1 = time.perf_counter()
        model = fit_model(build_model(model_cfg, name, content), split)
        fit_s = time.perf_counter() - t1
        metrics = evaluate_model(model, split, cfg)
        rows.append(
            {
                "dataset": dataset.name,
                "model": name,
                "split": split.kind,
                **metrics,
                "fit_seconds": fit_s,
            }
        )

    title = (
        f"{dataset.name}: {summary['users']} users, {summary['items']} items, "
        f"{summary['interactions']} interactions ({split.kind}, {cfg.eval.protocol} ranking, {cfg.eval.stage})"
    )
    print_table(title, rows, columns=table_columns([int(k) for k in cfg.eval.ks]))
    if output_dir is not None:
        result = {
            "config": OmegaConf.to_container(cfg, resolve=True),
            "dataset": summary,
            "results": rows,
        }
        atomic_write_text(output_dir / "metrics.json", json.dumps(result, indent=2, default=float))
        log.info("wrote %s", output_dir / "metrics.json")
    return rows


FEDERATED_COLUMNS = [
    "round",
    "accepted",
    "dropped",
    "rejected",
    "train_loss",
    "hr@10",
    "ndcg@10",
    "val_ndcg@10",
    "bytes_up",
    "seconds",
]
"""The columns of the federated table (:func:`federated_columns` adds the optional ones)."""


def federated_columns(rows: list[dict[str, Any]]) -> list[str]:
    """:data:`FEDERATED_COLUMNS`, with ``epsilon`` (the privacy spent so far) when DP ran (a round
    carries it) and ``best_epoch`` when the central reference ran (its row comes last)."""
    columns = list(FEDERATED_COLUMNS)
    if any("epsilon" in row for row in rows):
        columns.insert(columns.index("bytes_up"), "epsilon")
    if rows and rows[-1].get("round") == "central":
        columns.append("best_epoch")
    return columns


def run_federated_mode(
    cfg: DictConfig, dataset: Dataset, data_path: Path | None, output_dir: Path | None
) -> list[dict[str, Any]]:
    """``mode=federated``: a Flower simulation; prints one row per round."""
    from simulations.federated import run_federated

    if data_path is None:
        raise ConfigError(
            "mode=federated needs paths.cache_dir: simulated clients read the cached dataset file"
        )
    if output_dir is None:
        output_dir = Path(cfg.paths.cache_dir) / "federated-run"
    rows = run_federated(cfg, data_path, output_dir)
    summary = dataset.summary()
    print_table(
        f"federated {cfg.model.get('kind', 'model')} on {dataset.name} ({summary['users']} users, "
        f"{summary['items']} items): {cfg.fl.strategy.name}, {cfg.fl.partition}, held-out users, test",
        rows,
        columns=federated_columns(rows),
    )
    result = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "dataset": summary,
        "rounds": rows,
    }
    atomic_write_text(output_dir / "metrics.json", json.dumps(result, indent=2, default=float))
    return rows


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    route_third_party_logs()
    group, name = hydra_identity()
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
        check_run_config(cfg)  # a bad setting stops the run before W&B writes one
        with Tracker.start(
            config, job_type=str(cfg.mode), group=group, run_dir=output_dir, name=name
        ) as tracker:
            rows = run(cfg, output_dir)
            track_results(tracker, rows, output_dir)
            objective = objective_value(cfg, rows)
            tracker.summary({f"objective/{cfg.objective.metric}": objective})
        log.info("results: %s", output_dir / "metrics.json")
        if tracker.mode != "disabled":  # the run is finished (closed) here; its files remain
            log.info("W&B run (%s): %s", tracker.mode, output_dir / "wandb")
        return objective
    except TandemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def track_results(tracker: Tracker, rows: list[dict[str, Any]], output_dir: Path) -> None:
    """Federated rounds as curves, result rows as tables, their metrics in the summary."""
    from fl.server_app import read_rounds

    for row in read_rounds(output_dir / "fl"):
        tracker.log_round(row)
    systems = [r for r in rows if "reranker" not in r]
    rerankers = [r for r in rows if "reranker" in r]
    tracker.log_table("results", systems)
    if rerankers:
        tracker.log_table("rerankers", rerankers)
        tracker.summary(
            {
                f"{r['reranker']}/{k}": v
                for r in rerankers
                for k, v in r.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
        )


def main() -> None:
    """Console-script entry point."""
    _hydra_main()


if __name__ == "__main__":
    main()
