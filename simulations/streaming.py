"""``mode=stream``: the service on a live stream, with drift detection and federated retraining.

1. The log is split in time: the first ``stream.warmup_fraction`` of the events trains the first
   live model (L1 two-tower and the L2 session model, central, ``stream.initial_epochs``), which is
   exported as a bundle and loaded by the service (:class:`serving.state.Service`, the object that
   ``tandem-serve`` wraps in HTTP). The warm-up events are ingested, so that sessions are live.
2. The rest of the log is replayed in time order (:class:`serving.sources.ReplaySource`). For each
   event, test then train: the service recommends for the event's user (k = 10), the event is a
   hit when its item is in that list (prequential HR@10), then the event is ingested.
3. A :class:`simulations.drift.DriftMonitor` watches the windowed HR@10 and the category mix.
   When it triggers (and ``stream.retrain``), ``stream.retrain_after`` events later (so that the
   training window holds data from after the change), the L2 model is retrained by
   ``stream.retrain_rounds`` Flower rounds (the ``fl/`` group's strategy, one user per client) on the last
   ``stream.recent_events`` events, warm-started from the live model (``init_checkpoint``); the
   result is exported as a new bundle and swapped in while the stream goes on.

Outputs: ``metrics.json`` (the HR@10 series, every retraining) and ``online_hr.png``. Compare
``stream.retrain=false`` and the no-drift control ``dataset.drift_strength=0`` with
``benchmarks/drift_retraining.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.progress import track

from fl.server_app import BEST_MODEL
from fl.task import task_data
from ranking.data import Dataset, Interactions
from ranking.errors import ConfigError
from ranking.recommender import SequenceRecommender
from ranking.storage import atomic_write_text, save_dataset
from serving.bundle import export_bundle
from serving.config import service_config
from serving.sources import ReplaySource
from serving.state import Service
from simulations.content import content_parts
from simulations.drift import DriftMonitor
from simulations.federated import federated_settings
from simulations.flower_sim import backend_from_cfg, simulate
from simulations.pipeline import item_vectors, make_l1
from simulations.report import print_table

log = logging.getLogger("tandem")
K = 10


def window_log(log_: Interactions, rows: np.ndarray, min_events: int = 3) -> Interactions:
    """The events ``rows`` as a log of their own: users renumbered, users with fewer than
    ``min_events`` events in the window left out (they give a client nothing to train on)."""
    counts = np.bincount(log_.user[rows], minlength=log_.n_users)
    rows = rows[counts[log_.user[rows]] >= min_events]
    users, dense = np.unique(log_.user[rows], return_inverse=True)
    return Interactions(
        user=dense,
        item=log_.item[rows],
        timestamp=log_.timestamp[rows],
        user_ids=log_.user_ids[users],
        n_items=log_.n_items,
    )


def category_counts(log_: Interactions, category: np.ndarray, n_categories: int) -> np.ndarray:
    cats = category[log_.item]
    return np.bincount(cats[cats >= 0], minlength=n_categories).astype(np.float64)


class LiveModels:
    """The live L1 (fixed) and L2 (retrained) and how to export them as a bundle."""

    def __init__(self, cfg: DictConfig, dataset: Dataset, out: Path, vectors: Any) -> None:
        self.cfg, self.dataset, self.out, self.vectors = cfg, dataset, out, vectors
        self.retriever: Any = None
        self.l2_checkpoint: Path | None = None
        self.version = 0

    def export(self, popularity: np.ndarray) -> Path:
        bundle = export_bundle(
            self.out / "bundles" / f"v{self.version}",
            retriever=self.retriever,
            l2_checkpoint=self.l2_checkpoint,
            catalog=self.dataset.catalog,
            popularity=popularity,
            rerankers=OmegaConf.to_container(self.cfg.get("rerankers") or {}, resolve=True),
            n_candidates=int(self.cfg.pipeline.n_candidates),
            item_vectors=self.vectors,
            meta={"version": f"v{self.version}"},
        )
        return bundle


def retrain(cfg: DictConfig, models: LiveModels, recent: Interactions, n: int) -> float:
    """Federated fine-tuning of the live L2 on ``recent`` (and, with ``stream.retrain_l1_epochs``,
    further central epochs of the L1 towers on it, index rebuilt); returns the seconds it took."""
    t0 = time.perf_counter()
    if int(cfg.stream.retrain_l1_epochs) > 0:
        models.retriever.fit(recent, epochs=int(cfg.stream.retrain_l1_epochs))
    out = models.out / f"retrain-{n}"
    window = Dataset(f"{models.dataset.name}-window{n}", models.dataset.catalog, recent)
    save_dataset(window, out / "window.npz")
    settings = federated_settings(cfg, out / "window.npz", out / "fl")
    settings = dataclasses.replace(
        settings,
        num_rounds=int(cfg.stream.retrain_rounds),
        init_checkpoint=str(models.l2_checkpoint),
    )
    simulate(
        settings,
        num_supernodes=task_data(settings).partition.n_clients,
        backend=backend_from_cfg(cfg),
    )
    models.l2_checkpoint = Path(settings.run_dir) / BEST_MODEL
    return time.perf_counter() - t0


def run_stream(
    cfg: DictConfig, dataset: Dataset, data_path: Path | None, output_dir: Path | None
) -> list[dict[str, Any]]:
    s = cfg.stream
    if "kind" not in cfg.model:
        raise ConfigError("mode=stream serves a sequence model (model=sasrec|gru4rec|...)")
    out = output_dir or Path(cfg.paths.cache_dir) / "stream-run"
    for stale in [out / "service", out / "bundles", *out.glob("retrain-*")]:
        shutil.rmtree(stale, ignore_errors=True)  # a rerun into this directory starts afresh
    full = dataset.interactions
    order = np.argsort(full.timestamp, kind="stable")
    n_warm = int(len(order) * float(s.warmup_fraction))
    if not 0 < n_warm < len(order):
        raise ConfigError(
            f"stream.warmup_fraction={s.warmup_fraction} leaves no warm-up or no stream"
        )
    live_rows = order[n_warm:][: int(s.max_events) if s.max_events else None]
    warm = full.take(order[:n_warm])
    catalog = dataset.catalog
    n_categories = len(catalog.category_names)

    parts = content_parts(
        OmegaConf.to_container(cfg.encoder, resolve=True), catalog, cfg.paths.cache_dir
    )
    models = LiveModels(cfg, dataset, out, item_vectors(parts))
    models.retriever = make_l1(cfg, dataset, parts).fit(warm)
    spec = federated_settings(cfg, data_path or out / "unused.npz", out / "unused").model
    l2 = SequenceRecommender.from_spec(
        spec.with_train(epochs=int(s.initial_epochs), progress=True)
    ).fit(warm)
    models.l2_checkpoint = l2.save(out / "initial-l2")
    settings = service_config(
        {
            "event_log": str(out / "service" / "events.log"),
            "ab": {"variants": OmegaConf.to_container(s.ab, resolve=True)},
        }
    )
    service = Service(models.export(warm.item_counts()), settings)
    replay = ReplaySource(warm, catalog)
    service.ingest([e for _, e in replay])  # the warm-up events: live sessions, one fsync

    monitor = DriftMonitor(
        n_categories,
        window=int(s.window),
        hr_drop=float(s.hr_drop),
        divergence_threshold=float(s.divergence_threshold),
    )
    monitor.reset(category_counts(warm, catalog.category, n_categories))
    stream = ReplaySource(full.take(live_rows), catalog)
    series: list[dict[str, Any]] = []
    retrains: list[dict[str, Any]] = []
    alarms: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    hits = np.zeros(len(live_rows), dtype=bool)
    gains = np.zeros(len(live_rows))  # prequential NDCG@10: 1 / log2(rank + 2) of the event's item
    seen = np.concatenate([order[:n_warm], live_rows])  # rows in stream order
    for n, (_, event) in enumerate(track(list(stream), description="stream", transient=True)):
        answer = service.recommend(event["user"], [], K, False)
        shown = [e["item"] for e in answer.items]
        if event["item"] in shown:
            hits[n] = True
            gains[n] = 1.0 / np.log2(shown.index(event["item"]) + 2)
        state = monitor.update(
            hits[n], int(catalog.category[service.slot.current.index_of[event["item"]]])
        )
        service.ingest([event])
        if n % int(s.log_every) == 0:
            series.append(
                {
                    "event": n,
                    "time": event["ts"],
                    "hr@10": state.hr,
                    "divergence": state.divergence,
                    "model_version": answer.model_version,
                }
            )
        if state.trigger:
            alarm = {"event": n, "time": event["ts"], "trigger": state.trigger}
            alarms.append(alarm)
            log.info("drift alarm at event %d: %s", n, state.trigger)
            if s.retrain:
                pending = alarm  # retrain once stream.retrain_after more events have arrived
            else:
                retrains.append({**alarm, "retrained_at": None, "seconds": 0.0, "version": None})
            monitor.reset(monitor.training - 1.0)  # keep watching from here
        if pending is not None and n - pending["event"] >= int(s.retrain_after):
            end = n_warm + n + 1
            recent = window_log(full, seen[max(0, end - int(s.recent_events)) : end])
            seconds = retrain(cfg, models, recent, len(retrains) + 1)
            models.version += 1
            bundle = models.export(full.take(seen[:end]).item_counts())
            asyncio.run(service.swap(str(bundle)))
            monitor.reset(category_counts(recent, catalog.category, n_categories))
            retrains.append(
                {**pending, "retrained_at": n, "seconds": seconds, "version": f"v{models.version}"}
            )
            pending = None
    service.close()
    times = full.timestamp[live_rows]
    np.savez(out / "stream_outcomes.npz", time=times, hit=hits, gain=gains)
    return finish(cfg, out, hits, gains, series, retrains, alarms, dataset)


def finish(
    cfg: DictConfig,
    out: Path,
    hits: np.ndarray,
    gains: np.ndarray,
    series: list[dict[str, Any]],
    retrains: list[dict[str, Any]],
    alarms: list[dict[str, Any]],
    dataset: Dataset,
) -> list[dict[str, Any]]:
    half = len(hits) // 2
    row = {
        "system": "stream" + (" + retraining" if cfg.stream.retrain else " (no retraining)"),
        "events": len(hits),
        "hr@10": float(hits.mean()),
        "ndcg@10": float(gains.mean()),
        "hr@10_first_half": float(hits[:half].mean()),
        "hr@10_second_half": float(hits[half:].mean()),
        "drift_alarms": len(alarms),
        "swaps": sum(r["version"] is not None for r in retrains),
    }
    print_table(
        f"{dataset.name}: prequential HR@10 of the live service (test then train, k = {K})",
        [row],
        columns=list(row),
    )
    if retrains:
        print_table(
            "drift alarms",
            retrains,
            columns=["event", "trigger", "retrained_at", "seconds", "version"],
        )
    plot_series(out / "online_hr.png", {row["system"]: (hits, retrains)}, int(cfg.stream.window))
    result = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "results": [row],
        "series": series,
        "retrains": retrains,
        "alarms": alarms,
    }
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2, default=float))
    return [row]


def rolling_hit_rate(hits: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` outcomes at every event (fewer at the start)."""
    csum = np.concatenate([[0.0], np.cumsum(hits, dtype=np.float64)])
    ends = np.arange(1, len(hits) + 1)
    starts = np.maximum(0, ends - window)
    return (csum[ends] - csum[starts]) / (ends - starts)


def plot_series(
    path: Path,
    runs: dict[str, tuple[np.ndarray, list[dict[str, Any]]]],
    window: int = 1000,
    drift_event: int | None = None,
) -> None:
    """Online HR@10 per run (mean of the last ``window`` events' outcomes), a dotted line at every
    retraining swap and, when given, a grey line where the world changed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, (hits, retrains) in runs.items():
        rate = rolling_hit_rate(np.asarray(hits, dtype=np.float64), window)
        events = np.arange(len(rate))[window:]
        (line,) = ax.plot(events, rate[window:], label=name)
        for r in retrains:
            if r["version"] is not None:
                ax.axvline(r["retrained_at"], color=line.get_color(), linestyle=":", alpha=0.7)
    if drift_event is not None:
        ax.axvline(drift_event, color="grey", linewidth=2, alpha=0.4, label="tastes drift")
    ax.set_xlabel("live events since go-live")
    ax.set_ylabel(f"prequential HR@10 (last {window} events)")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
