"""What one running service holds: the bundle slot (blue-green), sessions, logs, A/B, metrics.

The HTTP layer (:mod:`serving.app`) only parses requests and formats answers; everything a request
does happens here, so that it reads top to bottom: session -> variant -> pipeline -> answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ranking.errors import ConfigError, DataError
from ranking.pipeline import recommend_batch
from serving.ab import Assigner, Variant
from serving.batching import MicroBatcher
from serving.bundle import Bundle, describe, load_bundle
from serving.config import ServiceConfig
from serving.event_log import EventLog
from serving.metrics import ServiceMetrics
from serving.sessions import MemorySessions, make_sessions

log = logging.getLogger("tandem.serving")


class RequestError(ValueError):
    """A request the service refuses (4xx): ``status`` and a message naming what was wrong."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Ask:
    """One recommendation request, as the HTTP layer parsed it."""

    user: str | None
    session: list[str]
    k: int = 10
    explain: bool = False


@dataclass
class Answer:
    items: list[dict[str, Any]]
    variant: str
    model_version: str
    timings_ms: dict[str, float]
    fallback: str | None = None
    ignored_history: int = 0


@dataclass
class BundleSlot:
    """The bundle being served and the one before it (for rollback). Requests read ``current``
    once, so a swap (one reference assignment) never mixes two bundles in one answer."""

    current: Bundle
    previous: Bundle | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Service:
    def __init__(self, bundle_path: str | Path, config: ServiceConfig) -> None:
        self.config = config
        torch.set_num_threads(config.torch_threads)
        self.metrics = ServiceMetrics()
        self.assigner = Assigner(config.ab["variants"], salt=config.ab.get("salt", "tandem"))
        self.slot = BundleSlot(self._load_checked(bundle_path))
        self.metrics.serving(self.slot.current.version, None)
        self.sessions = make_sessions(
            config.sessions.kind,
            max_len=config.sessions.max_len,
            redis_url=config.sessions.redis_url,
        )
        self.events = EventLog(config.event_log)
        if isinstance(self.sessions, MemorySessions):
            for event in self.events:  # rebuild in-memory sessions from every acknowledged event
                self.sessions.append(event["user"], [event["item"]])
        impressions = Path(config.event_log).with_name("impressions.jsonl")
        self.impressions = open(impressions, "a")  # noqa: SIM115 (open for the service's lifetime)
        self.executor = ThreadPoolExecutor(config.workers, thread_name_prefix="tandem-io")
        self.batcher: MicroBatcher[Ask, Answer | RequestError] = MicroBatcher(
            self.recommend_many, max_batch=config.max_batch, threads=config.workers
        )
        self.loader = ThreadPoolExecutor(1, thread_name_prefix="tandem-loader")

    # ------------------------------------------------------------------ bundles

    def _load_checked(self, path: str | Path) -> Bundle:
        """Load, check that every A/B variant's re-ranker is in it, and warm it up."""
        bundle = load_bundle(path, num_threads=self.config.torch_threads)
        missing = [
            v.reranker
            for v in self.assigner.variants
            if v.reranker is not None and v.reranker not in bundle.rerankers
        ]
        if missing:
            raise DataError(
                f"bundle lacks the re-rankers {missing} that ab.variants serve; it has "
                f"{sorted(bundle.rerankers)}",
                path=path,
            )
        warm = np.array([int(np.argmax(bundle.popularity))], dtype=np.int64)
        for variant in self.assigner.variants:  # first calls pay torch's and FAISS's set-up
            bundle.pipeline_for(variant.reranker).recommend(warm, k=1)
        return bundle

    async def swap(self, path: str) -> dict[str, Any]:
        """Load ``path`` off the event loop, then switch to it; a failure keeps the old bundle."""
        loop = asyncio.get_running_loop()
        try:
            bundle = await loop.run_in_executor(self.loader, self._load_checked, path)
        except (DataError, ConfigError) as exc:
            self.metrics.swaps.labels("refused").inc()
            raise RequestError(f"bundle refused, still serving the old one: {exc}") from exc
        with self.slot.lock:
            old = self.slot.current
            self.slot.previous, self.slot.current = old, bundle
        self.metrics.serving(bundle.version, old.version)
        self.metrics.swaps.labels("swapped").inc()
        log.info("serving bundle %s (was %s)", bundle.version, old.version)
        return {"serving": describe(bundle), "previous": describe(old)}

    def rollback(self) -> dict[str, Any]:
        with self.slot.lock:
            if self.slot.previous is None:
                raise RequestError("no previous bundle to roll back to", status=409)
            old = self.slot.current
            self.slot.current, self.slot.previous = self.slot.previous, old
        self.metrics.serving(self.slot.current.version, old.version)
        self.metrics.swaps.labels("rollback").inc()
        return {"serving": describe(self.slot.current), "previous": describe(old)}

    # ------------------------------------------------------------------ events

    def ingest(self, events: list[dict[str, Any]]) -> list[int]:
        """Check, durably log, then apply ``events`` (all or none)."""
        bundle = self.slot.current
        for n, event in enumerate(events):
            if event["item"] not in bundle.index_of:
                raise RequestError(f"events[{n}].item: unknown item id {event['item']!r}")
        seqs = self.events.append(events)
        for event in events:
            self.sessions.append(event["user"], [event["item"]])
        self.metrics.events.inc(len(events))
        return seqs

    # ------------------------------------------------------------------ recommend

    def history(
        self, bundle: Bundle, user: str | None, session: list[str]
    ) -> tuple[np.ndarray, int]:
        """Dense ids of the user's stored session then the request's own items.

        Request items must be in the catalog (else 422); stored items that the serving bundle's
        catalog lacks (e.g. after a swap) are left out and counted.
        """
        for n, item in enumerate(session):
            if item not in bundle.index_of:
                raise RequestError(f"session[{n}]: unknown item id {item!r}")
        stored = self.sessions.get(user) if user is not None else []
        known = [bundle.index_of[i] for i in stored if i in bundle.index_of]
        ids = known + [bundle.index_of[i] for i in session]
        return np.asarray(ids, dtype=np.int64), len(stored) - len(known)

    def check_k(self, bundle: Bundle, k: int) -> None:
        limit = min(self.config.limits.max_k, bundle.pipeline.n_candidates, bundle.n_items)
        if not 1 <= k <= limit:
            raise RequestError(
                f"k={k} is out of range: 1..{limit} (the smallest of limits.max_k, the bundle's "
                f"{bundle.pipeline.n_candidates} candidates and its {bundle.n_items} items)"
            )

    def recommend(self, user: str | None, session: list[str], k: int, explain: bool) -> Answer:
        """One request (raises :class:`RequestError`); the server batches through
        :meth:`recommend_many` instead."""
        answer = self.recommend_many([Ask(user, session, k, explain)])[0]
        if isinstance(answer, RequestError):
            raise answer
        return answer

    def _prepare(self, bundle: Bundle, ask: Ask) -> tuple[Variant, np.ndarray, int]:
        self.check_k(bundle, ask.k)
        if len(ask.session) > self.config.limits.max_session_items:
            raise RequestError(
                f"session has {len(ask.session)} items; at most limits.max_session_items="
                f"{self.config.limits.max_session_items}"
            )
        history, ignored = self.history(bundle, ask.user, ask.session)
        return self.assigner.assign(ask.user), history, ignored

    def recommend_many(self, asks: Sequence[Ask]) -> list[Answer | RequestError]:
        """A micro-batch of requests, all served by the bundle current at its start: one L1
        search and one L2 pass per distinct ``k``; each request's own variant re-ranks it."""
        t0 = time.perf_counter()
        bundle = self.slot.current
        out: list[Answer | RequestError | None] = [None] * len(asks)
        groups: dict[int, list[tuple[int, Variant, np.ndarray, int]]] = {}
        for n, ask in enumerate(asks):
            try:
                variant, history, ignored = self._prepare(bundle, ask)
            except RequestError as exc:
                out[n] = exc
                continue
            if len(history) == 0:
                ids = bundle.popular(ask.k)
                why = [{"why": "popular: no session history for this user"} for _ in ids]
                timings = {"l1": 0.0, "l2": 0.0, "rerank": 0.0}
                out[n] = self._answer(
                    bundle,
                    ask,
                    variant,
                    ids,
                    bundle.popularity[ids],
                    why,
                    timings,
                    ignored,
                    "popular",
                    t0,
                )
            else:
                groups.setdefault(ask.k, []).append((n, variant, history, ignored))
        for k, members in groups.items():
            pipelines = [bundle.pipeline_for(v.reranker) for _, v, _, _ in members]
            recs = recommend_batch(pipelines, [h for _, _, h, _ in members], k)
            for (n, variant, _, ignored), rec in zip(members, recs, strict=True):
                keep = np.asarray(rec.items) >= 0  # FAISS pads with -1: never shown
                why = [e for e, kept in zip(rec.explanations, keep, strict=False) if kept]
                timings = {"l1": rec.l1_ms, "l2": rec.l2_ms, "rerank": rec.rerank_ms}
                ids, scores = np.asarray(rec.items)[keep], np.asarray(rec.scores)[keep]
                out[n] = self._answer(
                    bundle, asks[n], variant, ids, scores, why, timings, ignored, None, t0
                )
        return [a for a in out if a is not None]

    def _answer(
        self,
        bundle: Bundle,
        ask: Ask,
        variant: Variant,
        ids: np.ndarray,
        scores: np.ndarray,
        explanations: list[dict[str, Any]],
        timings: dict[str, float],
        ignored: int,
        fallback: str | None,
        t0: float,
    ) -> Answer:
        items = []
        for n, (item, score) in enumerate(zip(ids, scores, strict=True)):
            entry: dict[str, Any] = {"item": str(bundle.item_ids[item]), "score": float(score)}
            if ask.explain and n < len(explanations):
                entry["why"] = json.loads(json.dumps(explanations[n], default=_plain))
            items.append(entry)
        timings["total"] = (time.perf_counter() - t0) * 1e3
        labels = (variant.name, bundle.version)
        for stage, ms in timings.items():
            self.metrics.stage_seconds.labels(stage, *labels).observe(ms / 1e3)
        self.metrics.recommendations.labels(*labels, fallback or "none").inc()
        if ask.user is not None:
            self._impression(ask.user, variant.name, bundle.version, [e["item"] for e in items])
        return Answer(items, variant.name, bundle.version, timings, fallback, ignored)

    def _impression(self, user: str, variant: str, version: str, items: list[str]) -> None:
        """What was shown to whom, after which event: what the A/B analysis scores."""
        record = {
            "user": user,
            "variant": variant,
            "model_version": version,
            "after_seq": len(self.events),
            "items": items,
            "time": time.time(),
        }
        with self.slot.lock:
            self.impressions.write(json.dumps(record) + "\n")
            self.impressions.flush()

    def close(self) -> None:
        self.batcher.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.loader.shutdown(wait=False, cancel_futures=True)
        self.events.close()
        self.impressions.close()
        self.sessions.close()


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
