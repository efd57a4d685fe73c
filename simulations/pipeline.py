"""``mode=pipeline``: the whole chain on one dataset (the default ``make simulate`` run).

1. the encoder (``encoder=tiny_trained``: tandem's tiny CLIP trained on the catalog's (image, title)
   pairs) embeds every item's text and image;
2. L1: a two-tower retriever over the fused item vectors (text + image + ID) is trained on the
   training users' sessions and served from a FAISS index (``index/`` group, HNSW by default);
3. L2: the session model (``model/``, SASRec by default) is trained federatedly in a Flower
   simulation (``fl/`` group), and the round with the best validation NDCG@10 is kept;
4. evaluation on held-out users (they never train, as in every federated run): L1 only, L2 full
   ranking, and the two-tier pipeline (L1 candidates re-ranked by L2), plus L1 recall, per-stage
   latency of single requests and the bytes sent per round.

A dataset without content (MovieLens: no images, no usable CLIP) runs with ``encoder=none``: the
L1 item tower learns item IDs only (items no training session touched stay out of the index), and
intra-list diversity and MMR compare the L1 item vectors instead of CLIP's.

The L1 retriever is trained centrally on the same training users (it needs no federated client
code); the L2 model never sees raw interactions on the server.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from encoders.storage import atomic_directory, config_key
from fl.server_app import BEST_MODEL, best_round, read_rounds
from fl.task import task_data
from ranking.data import Dataset
from ranking.errors import ConfigError
from ranking.evaluation import evaluate
from ranking.hybrid import build_reranker
from ranking.pipeline import TwoTierPipeline, latency_summary
from ranking.recommender import load_recommender
from ranking.rules import build_rule
from ranking.rules.base import HardRule
from ranking.storage import atomic_write_text
from ranking.two_tower import TwoTowerRetriever, l1_recall
from serving.bundle import export_bundle
from simulations.content import content_parts
from simulations.federated import federated_settings
from simulations.flower_sim import backend_from_cfg, simulate
from simulations.report import print_table
from simulations.report_cli import write_run_report
from simulations.rerank_eval import K, evaluate_rerankers
from simulations.tracking import active_tracker, epoch_callback, hydra_identity

log = logging.getLogger("tandem")

RERANKER_COLUMNS = [
    "reranker",
    "method",
    "ndcg@10",
    "hr@10",
    "coverage@10",
    "ild@10",
    "novelty@10",
    "calibration_kl@10",
    "violations",
    "p99_ms",
]


def item_vectors(parts: dict[str, np.ndarray]) -> np.ndarray | None:
    """L2-normalised CLIP item vectors (text and image averaged): what ILD and MMR compare."""
    mats = [p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12) for p in parts.values()]
    if not mats:
        return None
    fused = np.mean(mats, axis=0)
    return (fused / np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-12)).astype(
        np.float32
    )


def diversity_vectors(
    parts: dict[str, np.ndarray], retriever: TwoTowerRetriever
) -> tuple[np.ndarray, str]:
    """The item vectors that ILD and MMR compare, and what they are: the CLIP vectors, or, for a
    dataset without content (``encoder=none``, e.g. MovieLens), the trained L1 item tower's."""
    clip = item_vectors(parts)
    if clip is not None:
        return clip, "CLIP item vectors"
    tower = item_vectors({"l1": retriever.item_vectors()})  # normalised alike
    assert tower is not None
    return tower, "L1 item-tower vectors (no content encoder)"


def make_l1(cfg: DictConfig, dataset: Dataset, parts: dict[str, np.ndarray]) -> TwoTowerRetriever:
    """The (untrained) L1 retriever of the ``pipeline.l1`` settings, its index from ``index/``."""
    l1 = cfg.pipeline.l1
    return TwoTowerRetriever(
        n_items=dataset.catalog.n_items,
        text=parts.get("text"),
        image=parts.get("image"),
        use_id=bool(l1.use_id),
        dim=int(l1.dim),
        session_model=str(l1.session_model),
        model=OmegaConf.to_container(l1.model, resolve=True),
        fusion=OmegaConf.to_container(l1.fusion, resolve=True),
        train={
            "epochs": int(l1.epochs),
            "seed": int(cfg.seed),
            "max_len": int(l1.max_len),
            "progress": True,
        },
        index=lambda dim: instantiate(cfg.index, dim=dim),
    )


def trained_key(cfg: DictConfig, data_path: Path) -> str:
    """Cache key of the trained L1 and L2: everything that shapes them, nothing that only reads
    them (re-rankers, evaluation, objective), so sweeps over re-rankers train nothing again."""
    parts = {
        k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("encoder", "index", "fl", "model")
    }
    parts.update(
        l1=OmegaConf.to_container(cfg.pipeline.l1, resolve=True),
        seed=int(cfg.seed),
        data=data_path.name,
    )
    return config_key(parts)


def trained_models(
    cfg: DictConfig,
    dataset: Dataset,
    data: Any,
    parts: dict[str, np.ndarray],
    settings: Any,
    seconds: dict[str, float],
) -> TwoTowerRetriever:
    """Train L1 (two-tower) and L2 (federated), or reuse both from the cache (``pipeline.reuse_trained``).

    The L2's run directory (rounds, checkpoints) ends up in ``settings.run_dir`` either way.
    """
    cache = Path(cfg.paths.cache_dir) / "trained" / trained_key(cfg, Path(settings.data_path))
    reuse = bool(cfg.pipeline.reuse_trained)
    retriever = make_l1(cfg, dataset, parts)
    t0 = time.perf_counter()
    if reuse and (cache / "l1.pt").exists():
        retriever.load(cache / "l1.pt")
        log.info("L1 two-tower reused from %s", cache)
    else:
        retriever.fit(data.train, callback=epoch_callback("l1"))
        retriever.save(cache / "l1.pt")
        log.info("L1 two-tower trained and indexed in %.1fs", time.perf_counter() - t0)
    seconds["l1_train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_dir = Path(settings.run_dir)
    if reuse and (cache / "fl" / BEST_MODEL / "manifest.json").exists():
        shutil.copytree(cache / "fl", run_dir, dirs_exist_ok=True)
        log.info("federated L2 reused from %s", cache / "fl")
    else:
        simulate(settings, num_supernodes=data.partition.n_clients, backend=backend_from_cfg(cfg))
        with atomic_directory(cache / "fl") as tmp:
            shutil.copytree(run_dir, tmp, dirs_exist_ok=True)
    seconds["l2_federated"] = time.perf_counter() - t0
    return retriever


def checked_rerankers(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """``(every re-ranker spec, those compared, the hard rules)``, each built and checked before
    anything trains: the bundle exports every ``rerankers.*``, the comparison runs those of
    ``pipeline.compare_only`` (all when null) and every list is checked against
    ``pipeline.hard_rules``.

    Raises
    ------
    ConfigError
        Naming the key: ``rerankers.<name>``, ``pipeline.hard_rules[i]``,
        ``pipeline.compare_only`` or ``objective.reranker``.
    """
    raw = cfg.get("rerankers")
    specs = OmegaConf.to_container(raw, resolve=True) if raw else {}
    if not isinstance(specs, dict):
        raise ConfigError(f"rerankers must map names to re-ranker specs, got {specs!r}")
    for name, spec in specs.items():
        try:
            build_reranker(spec).check(K)
        except ConfigError as exc:
            raise ConfigError(f"rerankers.{name}: {exc}") from exc
    hard_rules = cfg.pipeline.get("hard_rules")
    rules = OmegaConf.to_container(hard_rules, resolve=True) if hard_rules else []
    if not isinstance(rules, list):
        raise ConfigError(f"pipeline.hard_rules must be a list of rule specs, got {rules!r}")
    for i, spec in enumerate(rules):
        try:
            rule = build_rule(spec)
        except ConfigError as exc:
            raise ConfigError(f"pipeline.hard_rules[{i}]: {exc}") from exc
        if not isinstance(rule, HardRule):
            raise ConfigError(
                f"pipeline.hard_rules[{i}]: {rule.name!r} is not a hard rule (a filter or a cap)"
            )
    compared = specs
    only = cfg.pipeline.get("compare_only")
    if only:
        if isinstance(only, str):
            raise ConfigError(f"pipeline.compare_only must be a list of names, got {only!r}")
        unknown = sorted(set(only) - set(specs))
        if unknown:
            raise ConfigError(
                f"pipeline.compare_only names unknown re-rankers {unknown}; known: {sorted(specs)}"
            )
        compared = {name: specs[name] for name in only}
    wanted = OmegaConf.select(cfg, "objective.reranker")
    if wanted and wanted not in compared:
        raise ConfigError(
            f"objective.reranker={wanted!r} is not among the compared re-rankers "
            f"{sorted(compared)} (rerankers.*, pipeline.compare_only)"
        )
    return {str(k): v for k, v in specs.items()}, compared, rules


def run_pipeline(
    cfg: DictConfig, dataset: Dataset, data_path: Path | None, output_dir: Path | None
) -> list[dict[str, Any]]:
    """Run the chain; prints its tables, writes ``metrics.json`` and (but in a sweep) the run's
    ``report.md``; returns the accuracy rows.

    The re-ranker specs and hard rules are checked first (:func:`checked_rerankers`): a bad
    value fails before anything is trained."""
    if data_path is None:
        raise ConfigError(
            "mode=pipeline needs paths.cache_dir: simulated clients read the cached dataset file"
        )
    if cfg.encoder.kind == "none" and not cfg.pipeline.l1.use_id:
        raise ConfigError(
            "mode=pipeline with encoder=none needs pipeline.l1.use_id=true: without content "
            "vectors the L1 item tower has only item IDs to learn from"
        )
    all_specs, specs, hard_rules = checked_rerankers(cfg)
    output_dir = output_dir or Path(cfg.paths.cache_dir) / "pipeline-run"
    settings = federated_settings(cfg, data_path, output_dir / "fl")
    data = task_data(settings)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    parts = content_parts(
        OmegaConf.to_container(cfg.encoder, resolve=True), dataset.catalog, cfg.paths.cache_dir
    )
    seconds["encoder"] = time.perf_counter() - t0

    retriever = trained_models(cfg, dataset, data, parts, settings, seconds)
    rounds = read_rounds(Path(settings.run_dir))
    if len(rounds) <= 1:
        raise ConfigError(f"the federated simulation wrote no rounds to {settings.run_dir}")
    l2 = load_recommender(Path(settings.run_dir) / BEST_MODEL)
    best = best_round(rounds) or rounds[-1]
    untrained = best["round"] == 0
    if untrained:
        log.warning(
            "the best validation round is 0: the L2 model is the untrained initial model "
            "(run more rounds, fl.num_rounds)"
        )

    n_candidates = int(cfg.pipeline.n_candidates)
    pipeline = TwoTierPipeline(retriever, l2, n_candidates)
    systems = {
        f"L1 only ({cfg.index.factory}, top {n_candidates})": TwoTierPipeline(
            retriever, None, n_candidates
        ),
        "L2 full ranking (federated)" + (" UNTRAINED: best round 0" if untrained else ""): l2,
        f"two-tier (L1 top {n_candidates} -> L2)": pipeline,
    }
    recall = l1_recall(retriever, data.heldout, "test", ks=(n_candidates,), exclude_seen=False)[
        f"recall@{n_candidates}"
    ]
    rows = []
    for name, scorer in systems.items():
        result = evaluate(scorer, data.heldout, "test", ks=(10,))
        rows.append(
            {
                "system": name,
                "hr@10": result["hr@10"],
                "ndcg@10": result["ndcg@10"],
                "users": result["n_users"],
            }
        )
    rows[0][f"l1_recall@{n_candidates}"] = recall

    histories = data.heldout.history("test").sequences()
    users = data.heldout.targets("test").user[: int(cfg.pipeline.latency_requests)]
    latency = latency_summary([pipeline.recommend(histories[u], k=10) for u in users])

    vectors, vector_space = diversity_vectors(parts, retriever)
    reranker_rows: list[dict[str, Any]] = []
    examples: dict[str, Any] = {}
    if specs:
        t0 = time.perf_counter()
        reranker_rows, examples = evaluate_rerankers(
            pipeline,
            specs,
            data.heldout,
            dataset.catalog,
            item_vectors=vectors,
            popularity=data.train.item_counts(),
            latency_requests=int(cfg.pipeline.latency_requests),
            hard_rules=hard_rules,
        )
        seconds["rerankers"] = time.perf_counter() - t0

    trained = [r for r in rounds if r["round"] > 0]
    federated = {
        "rounds": len(trained),
        "clients": data.partition.n_clients,
        "best_round": best["round"],
        "bytes_up_per_round": float(np.mean([r["bytes_up"] for r in trained])),
        "bytes_down_per_round": float(np.mean([r["bytes_down"] for r in trained])),
        "update_encoding": f"{settings.update_encoding}/{settings.quantize}",
        "strategy": settings.strategy.name,
    }

    summary = dataset.summary()
    print_table(
        f"{dataset.name}: {summary['items']} items, {summary['users']} users; {len(users)} held-out users "
        f"(leave-one-out test, full catalog)",
        rows,
        columns=["system", "hr@10", "ndcg@10", f"l1_recall@{n_candidates}", "users"],
    )
    print_table(
        "per-stage latency of single requests (ms)",
        [
            {"stage": s, "p50_ms": latency[f"{s}_p50_ms"], "p99_ms": latency[f"{s}_p99_ms"]}
            for s in ("l1", "l2", "total")
        ],
        columns=["stage", "p50_ms", "p99_ms"],
    )
    print_table(
        f"federated L2 ({settings.strategy.name}, {federated['update_encoding']})",
        [federated],
        columns=["rounds", "clients", "best_round", "bytes_up_per_round", "bytes_down_per_round"],
    )
    if reranker_rows:
        print_table(
            f"re-rankers on the federated L2 (two-tier, top 10 of {n_candidates} candidates; "
            f"held-out users; ILD and MMR over {vector_space})",
            reranker_rows,
            columns=RERANKER_COLUMNS,
        )
    skipped: dict[str, list[str]] = {}  # one line per skip, naming every re-ranker it hit
    for row in reranker_rows:
        if row["skipped_rules"]:
            skipped.setdefault(str(row["skipped_rules"]), []).append(str(row["reranker"]))
    for why, names in skipped.items():
        print(f"skipped, the dataset lacks what it needs: {why} (in {', '.join(names)})")
    if examples:
        print(
            f"why these items ({examples['reranker']}, a held-out user whose last items are {examples['history']}):"
        )
        for line in examples["lines"]:
            print(f"  {line}")
    print_table("wall time per stage (s)", [seconds], columns=list(seconds))
    result = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "dataset": summary,
        "results": rows,
        "latency": latency,
        "federated": federated,
        "seconds": seconds,
        "rerankers": reranker_rows,
        "explanations": examples,
        "diversity_vectors": vector_space,
    }
    if cfg.pipeline.export_bundle:
        bundle = export_bundle(
            output_dir / "bundle",
            retriever=retriever,
            l2_checkpoint=Path(settings.run_dir) / BEST_MODEL,
            catalog=dataset.catalog,
            popularity=data.train.item_counts(),
            rerankers=all_specs,
            n_candidates=n_candidates,
            item_vectors=vectors,
            meta={"dataset": dataset.name, "seed": int(cfg.seed), "best_round": best["round"]},
        )
        result["bundle"] = str(bundle)
        print(f"serving bundle: {bundle}  (tandem-serve --bundle {bundle})")
    atomic_write_text(output_dir / "metrics.json", json.dumps(result, indent=2, default=float))
    if hydra_identity()[0] is None:  # a sweep's jobs write none: tandem-report reads the sweep
        report = write_run_report(output_dir)
        if report is not None:
            print(f"report: {report}  (figures beside it)")
            tracker = active_tracker()
            for figure in sorted(report.parent.glob("*.png")) if tracker else ():
                tracker.log_image(f"report/{figure.stem}", figure)
    return rows + reranker_rows
